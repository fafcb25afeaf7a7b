r"""Forensic geometry watermark: blind, keyed, robust (issue 4).

Public API
----------
``embed(vertices, faces, payload, key, *, strength=None) -> vertices``
``plan_embed(vertices, faces) -> EmbedPlan`` (per asset, cacheable; ``to_bytes`` /
``EmbedPlan.from_bytes``) and ``apply_plan(plan, vertices, payload, key, *,
strength=None, faces=None) -> vertices`` (per delivery; see ``mark``'s docstring)
``extract(vertices, faces, key, *, payload_bits=64) -> ExtractResult``
``verify(vertices, faces, key, expected_payload) -> VerifyResult``; for many keys on
one mesh (a trace), ``read_mesh(vertices, faces) -> MeshReading`` once and
``verify_reading(reading, key, expected_payload)`` per key (same result)
``derive_delivery_key(studio_secret, delivery_id) -> bytes``
``load_meshes(path)``, ``embed_file(src, dst, payload, key)``, ``extract_file(path, key)``,
``verify_file(path, key, expected_payload, *, reader=None)``; ``manifest_entry(payload,
key, report, reader=None)``, ``reader_hints(file_verify_result)``, ``parse_reader_hints(entry)``.
Informed (server) tier: ``correspond(leak_v, leak_f, orig_v, orig_f) -> Correspondence``,
``informed_verify(correspondence, key, expected_payload) -> InformedResult`` (needs scipy).

Method (after Cho, Prost & Jung, IEEE TSP 55(1), 2007, "Method I")
-------------------------------------------------------------------
1. *Merge* coincident vertices (exporters split them at UV seams / hard edges:
   positions with bitwise-equal coordinates count once, found by one sort of
   (norm, position hash)) and drop vertices no triangle references.
2. *Centre* ``c`` = mean of the triangle corners (schemes ``sealport-wm/v2``, v3): the
   copies of a split vertex together count what the vertex counted, and noise,
   rounding to a grid or smoothing move it by ~sigma / sqrt(N). Scheme v1 used the
   area-weighted centroid, which rounding and noise move 100-200x more (triangle
   areas change systematically); v1 deliveries are still read in their own frame
   (``keys.SCHEME_FRAMES``; :mod:`.geometry` says why and where it was measured).
   Norms ``rho_i = |v_i - c|``: invariant to rotation, translation and vertex/face
   reordering.
3. *Keyed bins.* From the key (HKDF labels), draw ``B`` bin widths in
   ``(1 +- 0.3)`` x mean (levels on ``[0, 1]``). Scheme v3 (``sealport-wm/v3``,
   since 2026-12-06) spreads them evenly between the norms at the ``Q_LO = 0.01``
   and ``Q_HI = 0.99`` quantiles (Cho's equal-width bins, robustly ended) when every
   such bin holds at least ``EVEN_MIN_COUNT = 16`` welded vertices, else, and in
   schemes v1/v2 always, the edges are the norms of the vertices at the levels'
   quantile ranks (every bin holds a known share of the vertices). Why both: on a
   small mesh even bins leave the sparse tails almost empty (8k-vertex bunny: 12 %
   of the bins under 8 vertices), while quantile bins make the dense norm ranges
   narrow, and noise or rounding crosses narrow bins' edges far more often (130k
   bunny, MESHBEN's 0.3 % noise: raw bit error rate 0.18 with quantile bins, 0.09
   with even ones at the same MRMS; docs/BENCHMARKS.md). Either way uniform
   scaling cancels, and the reader applies the same rule to the same counts (the
   embedder moves no vertex across an edge); v3's reader also tries the other
   partition when the first does not decode (an attack can move the emptiest
   bin's count across the threshold). Inside bin ``b`` a vertex has ``x = (rho -
   e_b) / (e_{b+1} - e_b)`` in ``[0, 1]``.
4. *Embedding.* Bit ``s_b = +-1`` is carried by the mean of ``x`` in bin ``b``:
   the histogram map ``x -> x**k_b`` (``k_b`` by vectorised Newton) pushes the mean
   to ``1/2 + s_b * alpha_b``; vertices move only along their ray from ``c``.
   ``x**k`` fixes 0 and 1, so edge vertices never move, no vertex leaves its bin,
   and the extractor recomputes the same partition. ``alpha_b = alpha * min(1,
   mean_width / width_b)`` caps the displacement in the wide tail bins. The centre
   moves a little when vertices move, so the embed repeats (<= 6 passes) until
   every bin mean is at its goal. The goal of bin ``b`` is ``max(alpha_b, natural
   margin + alpha_b / 2)`` (capped at 0.3): every bin moves *towards* its bit, also
   one already past ``1/2 + alpha_b`` -- the informed tier reads the direction of
   the move. A bin far on the wrong side (lumpy bins of small or CAD-like meshes)
   moves at most ``3 alpha_b`` at first; embed doubles the cap of the bins that
   stay short of ``alpha_b / 4`` past 1/2 (<= 7 rounds, stopping before the RMS
   displacement passes 0.25 % of the bbox diagonal) and keeps the round with the
   fewest wrong code bytes, so benign copies of smooth meshes read back with 0 bit
   errors at small distortion, and a lumpy CAD part leaves a byte or two to the
   RS code rather than take a visible push.
5. *Extraction* is blind: bit = [mean_b > 1/2]; reliability ``|mean_b - 1/2| *
   sqrt(n_b)``; a bin with fewer than ``MIN_BIN_VERTICES = 8`` vertices is an
   erasure. *Verification* knows the expected payload (from the manifest): if
   the blind decode fails it runs a known-payload detector on the soft scores
   ``z_b = (mean_b - 1/2) sqrt(n_b)`` against the expected signs. A mesh found
   rounded to a coarse axis-aligned grid (7-8 bits per axis: the grid step is more
   than ~1.2 mean bin widths) is read *dequantised* (:mod:`.dequantise`): each
   vertex goes to the bin of its norm estimated before the rounding (a few steps of
   umbrella smoothing clamped to its grid cell) and adds its rounded norm to that
   bin's mean; the rounding keeps the mark on average, the plain reading loses it
   by sorting vertices into the wrong bins. The choice depends on the mesh alone
   (never on a key), so the bounds below hold as they are.
6. *Code.* codeword = RS_GF(256)(payload || tag), tag = HMAC-SHA256(HKDF(key,
   "tag"), payload)[:4], 8 parity bytes. 64-bit payload -> 20 bytes -> ``B = 160``
   bins. Code bits are XORed with keyed whitening bits and placed in bins by a
   keyed permutation. Decoding tries ``e + 2t <= 8`` with a ladder of erasure sets
   (bytes holding unusable bins, then the least reliable bytes, one at a time).

Capacity rule
-------------
``B = 8 * (payload_bytes + 4 + 8)`` bins (160 for 64 bits), each needing
``MIN_BIN_VERTICES = 8`` welded vertices; the smallest keyed bin holds
``(Q_HI - Q_LO) * (1 - 0.3) / B`` of the vertices, so a mesh needs
``ceil(B * 8 / (0.98 * 0.7))`` = **1,866 welded, face-referenced vertices for a
64-bit payload** (about 29 vertices per payload bit); fewer gives ``too_small`` /
``WatermarkCapacityError``. Robustness grows with vertices per bin (about
``sqrt(n_b)``): meshes with >= 20k vertices are much more robust than the floor.

False-positive analysis
-----------------------
*Blind decode* (``extract``): for an unmarked mesh or a wrong key the decoded
message passes the keyed 32-bit tag with probability 2^-32 per decode attempt
(HMAC is a PRF under a key the mesh cannot depend on); the erasure ladder makes at
most ``NSYM + 1 = 9`` attempts per partition, so ``P(false "found") <= 9 * 2^-32 =
2.1e-9`` per check (v1, v2) and ``<= 18 * 2^-32 = 4.2e-9`` in v3, whose reader tries
two partitions, whatever the mesh. *Known-payload detector* (``verify`` fallback when the
blind decode fails): with the key-derived whitening every expected sign ``s_j``
is a fair coin independent of an unmarked mesh (and of its scores ``z``), so
``P(sum s_j z_j >= T) <= exp(-T^2 / (2 sum z_j^2))`` (Hoeffding) and ``P(agree >=
a of n) = sum_{i>=a} C(n,i) / 2^n``; we take the smaller, times 2, and accept only
when it is ``<= 1e-9`` (v3: the best of the two partitions' p-values, times 2).
``verify`` thus has a total false-positive bound ``<= 3.1e-9`` (v1, v2), ``<=
5.2e-9`` (v3).

Key handling and threat trade-off
---------------------------------
The server holds a studio secret and derives ``derive_delivery_key(secret,
delivery_id)`` (HKDF-SHA256) per delivery. The manifest gives the client only
that per-delivery key, because a blind client-side check needs the key. Cost: the
recipient of a delivery holds the key of *his own* mark, so he can locate it and
try to erase it (e.g. re-randomise the bin means) or forge his own payload into
other meshes. He learns nothing about other deliveries' keys (HKDF is one-way) and
cannot forge a mark that the server would attribute to another delivery. The
forensic trace does not depend on the recipient's cooperation: the server derives
each candidate delivery's key and tests it (``extract`` / ``verify``). A studio
that distrusts recipients more should not send the key (verify server-side) or
add a second, server-only layer; that is not implemented here.

Informed tier (``informed.py``, ``attack_model.py``; ``sealport trace --data``)
-------------------------------------------------------------------------------
The server has the original and every delivery key, so for each candidate it
knows the displacement its mark made at every original vertex. It models the
attack on the original (same vertex order: quantisation grid, inverted Laplacian
smoothing or noise; other connectivity: similarity ICP refitted on the surviving
vertices, the rest projected onto the original surface), and scores each bin of
the *original's* keyed partition with the log-likelihood ratio of the two moves
the embedder would have made (a matched filter). The expected bin signs are
keyed and whitened, so for an unrelated mesh or key they are fair coins
independent of the scores: the exact conditional sign test on the
|score|-weighted disagreement (``sign_test.py``: a dynamic programme over fair
coins with weights rounded down, so p can only rise) gives an analytic
false-positive bound, accepted at <= 1e-9 per check (for cropping and
simplification the smaller of it and the binomial tail, doubled). No attack-model choice looks at the expected signs, so the bound holds
whatever it picks. In v3's frame, when the original's emptiest even bin is within a
factor 2 of the even/quantile threshold, both partitions are scored and the better
p-value is doubled (the embedder's moves can carry that count across the threshold,
and the mark is where its read-back put it: ``informed._partitions``).

Limits (measured in docs/BENCHMARKS.md, "Watermark"): blind decoding survives
float32, reordering, triangulation, similarity transforms, exporter vertex splits
and Blender round trips exactly; additive noise, smoothing, quantisation,
simplification and especially cropping degrade or destroy it, as for every
histogram-of-norms method with this many bins. The informed tier names the
delivery under cropping, simplification to 30 % of the faces, quantisation to 7
bits and 50 Laplacian steps; not under noise beyond what any reader can do at
this distortion (``informed`` module doc: ``z = sqrt(E) / sigma``), nor
remeshing.
"""

from .errors import WatermarkCapacityError, WatermarkFormatError
from .files import (
    EmbedReport,
    FileExtractResult,
    FileVerifyResult,
    embed_file,
    extract_file,
    load_meshes,
    verify_file,
)
from .informed import (
    Correspondence,
    InformedResult,
    correspond,
    correspond_frames,
    informed_verify,
)
from .keys import SCHEME, SCHEME_FRAMES, SCHEME_V1, SCHEME_V2, derive_delivery_key
from .manifest import (
    entry_frame,
    manifest_entry,
    parse_manifest_entry,
    parse_reader_hints,
    reader_hints,
)
from .mark import (
    DEFAULT_STRENGTH,
    EmbedPlan,
    ExtractResult,
    MeshReading,
    ReaderHint,
    VerifyResult,
    apply_plan,
    capacity_bits,
    embed,
    extract,
    min_vertices,
    plan_embed,
    read_mesh,
    verify,
    verify_reading,
)

__all__ = [
    "DEFAULT_STRENGTH",
    "Correspondence",
    "InformedResult",
    "SCHEME",
    "SCHEME_FRAMES",
    "SCHEME_V1",
    "SCHEME_V2",
    "EmbedPlan",
    "EmbedReport",
    "ExtractResult",
    "MeshReading",
    "FileExtractResult",
    "FileVerifyResult",
    "ReaderHint",
    "VerifyResult",
    "WatermarkCapacityError",
    "WatermarkFormatError",
    "apply_plan",
    "capacity_bits",
    "correspond",
    "correspond_frames",
    "derive_delivery_key",
    "embed",
    "embed_file",
    "extract",
    "extract_file",
    "informed_verify",
    "load_meshes",
    "manifest_entry",
    "min_vertices",
    "parse_manifest_entry",
    "entry_frame",
    "parse_reader_hints",
    "plan_embed",
    "read_mesh",
    "reader_hints",
    "verify",
    "verify_file",
    "verify_reading",
]
