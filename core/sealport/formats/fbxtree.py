"""Binary FBX node tree: a strictly bounds-checked reader and a writer.

Why our own: the only FBX reader on PyPI we can build everywhere is a ufbx
binding, and the ones measured here (ufbx 0.0.5, see ``docs/FBX.md``) corrupt
memory, so a DCC cannot run them in its own process; and nothing on PyPI
*writes* binary FBX without the Autodesk SDK or all of Blender. The server must
rewrite vertex positions to embed the forensic watermark, and the client must
read them back, in any host. The binary node tree is small and documented by
long use (Blender's ``parse_fbx``/``encode_bin``, ufbx, the FBX SDK's output):

- header: ``Kaydara FBX Binary  \\x00\\x1a\\x00`` + uint32 version;
- node: end offset (absolute), property count, property-list length (uint32,
  or uint64 from version 7500), uint8 name length, name, properties, then an
  optional nested list closed by a null record (13 or 25 zero bytes);
- properties: ``Y C I F D L`` scalars, ``S R`` length-prefixed bytes, and
  ``f d l i b`` arrays (count, encoding 0 raw / 1 zlib, byte length, data);
- the top level ends with a null record, followed by a footer.

Every length and offset is checked against its enclosing bound before use;
depth, node count and array sizes are capped; arrays are decoded only on
request, zlib output is limited to the declared size (a zlib bomb cannot
allocate more than the array it claims to be). Parsing is pure Python, so a
hostile file can raise :class:`FbxTreeError` and nothing else.

Memory is bounded per file, relative to the file's size, because one small
file can otherwise claim a lot (security review, measured in
``docs/SERVER_SECURITY.md``): a 4 MB file of 2,000,000 one-byte properties
built ~270 MB of Python objects, and zlib arrays (up to ~1000:1 each) decoded
for every mesh made a 0.3 MB file hold 1.1 GB. So:

- **objects**: nodes + properties may not exceed ``size / BYTES_PER_OBJECT``
  (at least :data:`OBJECT_FLOOR`; never more than :data:`MAX_NODES` nodes or
  :data:`MAX_PROPERTIES` properties). A node's declared property count is
  charged before its properties are built.
- **arrays**: bytes decoded, plus the arrays derived from them by the mesh
  readers (float64 points, int64 indices, triangles), may not exceed
  ``MEMORY_RATIO x size`` (at least :data:`MEMORY_FLOOR`, at most
  :data:`MEMORY_CAP`); see :meth:`FbxTree.charge`. Charged before allocating.

The writer re-serialises the tree from the original bytes with some array
properties replaced, recomputing every end offset and the footer's alignment
padding. With no replacement it reproduces the input byte for byte (tested).
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"Kaydara FBX Binary  \x00\x1a\x00"
HEADER_LEN = 27
MIN_VERSION, MAX_VERSION = 6100, 7700
MAX_DEPTH = 64
"""Real files nest 4-6 deep (Objects > Geometry > LayerElementNormal > Normals)."""
MAX_NODES = 4_000_000
"""Absolute cap on nodes."""
NODE_BYTES = 270
"""Python memory of one parsed node (tracemalloc: 268 B with a one-byte name)."""
PROP_BYTES = 140
"""Python memory of one parsed property (tracemalloc: 136 B)."""
MAX_PROPERTIES = 16_000_000
"""Absolute cap on properties; a 100k-object scene has ~10 M."""
BYTES_PER_OBJECT = 6
"""A file may hold one node or property per 6 of its bytes. Real files use 12-130
(Blender's texture fixtures 12.5, the demo chair 134): a 2x margin, while a file
of 2-byte properties (~140 B each in Python) is held to ~23x its size."""
OBJECT_FLOOR = 250_000
"""Objects any file may have, however small (~50 MB at worst)."""
MEMORY_RATIO = 64
"""Decoded + derived array bytes per byte of file. A flat regular grid with
nothing but positions and quads (the most compressible mesh an exporter writes)
needs 19.4x; real files carry normals and UVs that are never decoded, so less."""
MEMORY_FLOOR = 64 * 1024**2
"""Array bytes any file may decode, however small."""
MEMORY_CAP = 8 * 1024**3
"""Array bytes no file may exceed, however large."""
MAX_ARRAY_BYTES = 2 * 1024**3
"""Largest decoded array (a 10M-vertex mesh's Vertices is 240 MB)."""
ZLIB_MAX_RATIO = 1100
"""Deflate cannot expand more than ~1032:1; an array declaring more is a lie."""

_SCALARS = {b"Y": "<h", b"C": "<B", b"I": "<i", b"F": "<f", b"D": "<d", b"L": "<q"}
ARRAY_DTYPES = {b"f": "<f4", b"d": "<f8", b"l": "<i8", b"i": "<i4", b"b": "u1"}
_FOOTER_MAGIC = b"\xf8\x5a\x8c\x6a\xde\xf5\xd9\x7e\xec\xe9\x0c\xe3\x75\x8f\x29\x0b"


class FbxTreeError(ValueError):
    """The bytes are not a well-formed binary FBX node tree.

    ``problem`` is a short lowercase clause for an artist-facing sentence,
    ``detail`` carries offsets and raw values for the TD.
    """

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(f"{problem} ({detail})" if detail else problem)
        self.problem = problem
        self.detail = detail


@dataclass(slots=True)
class Prop:
    """One property: where it sits in the file and, for scalars, its value."""

    code: bytes
    start: int
    """Offset of the one-byte type code."""
    end: int
    value: int | float | None = None
    count: int = 0
    """Arrays: element count."""
    encoding: int = 0
    """Arrays: 0 raw, 1 zlib."""
    data_start: int = 0
    """Arrays, S, R: offset of the payload bytes."""
    data_len: int = 0


@dataclass(slots=True)
class Node:
    name: bytes
    start: int
    end: int
    props: list[Prop]
    props_end: int
    children: list[Node] = field(default_factory=list)
    nested: bool = False
    """The node has a nested list (closed by a null record), possibly empty."""

    def child(self, name: bytes) -> Node | None:
        return next((c for c in self.children if c.name == name), None)


def memory_budget(size: int) -> int:
    """Array bytes (decoded + derived) a file of ``size`` bytes may make us hold."""
    return min(MEMORY_CAP, max(MEMORY_FLOOR, MEMORY_RATIO * size))


@dataclass(slots=True)
class FbxTree:
    data: bytes | mmap.mmap
    """The file's bytes (a read-only map for large files: nothing is copied)."""
    version: int
    roots: list[Node]
    roots_end: int
    """Offset just past the top-level null record; the footer follows."""
    nodes: int
    props: int = 0
    budget: int = MEMORY_FLOOR
    """Array bytes this tree may still hand out (see :meth:`charge`)."""
    charged: int = 0

    @property
    def nbytes(self) -> int:
        """Memory held (for bounded caches): the file's bytes plus the node objects,
        estimated at :data:`NODE_BYTES` per node and :data:`PROP_BYTES` per property."""
        return len(self.data) + self.nodes * NODE_BYTES + self.props * PROP_BYTES

    def charge(self, nbytes: int, what: str) -> None:
        """Account for ``nbytes`` of arrays about to be made from this file, or refuse.

        Readers call this *before* allocating (decoded arrays, float64/int64
        copies, triangles), so a file whose arrays expand far beyond its size is
        refused after a bounded amount of work instead of exhausting memory.
        """
        if self.charged + nbytes > self.budget:
            raise FbxTreeError(
                "its compressed data expands to more than a file of its size may hold",
                f"{what}: {nbytes} bytes on top of {self.charged}, budget {self.budget} "
                f"({MEMORY_RATIO}x of {len(self.data)} bytes, floor {MEMORY_FLOOR}, "
                f"cap {MEMORY_CAP})",
            )
        self.charged += nbytes

    def root(self, name: bytes) -> Node | None:
        return next((n for n in self.roots if n.name == name), None)

    def string(self, prop: Prop) -> bytes:
        if prop.code not in (b"S", b"R"):
            raise FbxTreeError("a property has the wrong type", f"{prop.code!r} at {prop.start}")
        return bytes(self.data[prop.data_start : prop.data_start + prop.data_len])

    def array(self, prop: Prop) -> np.ndarray:
        """Decode an array property (zlib output bounded by its declared size)."""
        dtype = ARRAY_DTYPES.get(prop.code)
        if dtype is None:
            raise FbxTreeError("a property is not an array", f"{prop.code!r} at {prop.start}")
        size = prop.count * np.dtype(dtype).itemsize
        if prop.encoding == 1:
            self.charge(size, f"array at {prop.start}")
        raw = self.data[prop.data_start : prop.data_start + prop.data_len]
        if prop.encoding == 0:
            return np.frombuffer(raw, dtype, prop.count)
        dec = zlib.decompressobj()
        try:
            # max_length 0 means 'no limit' to zlib: an array declaring 0 values must
            # not inflate a bomb, so ask for at least one byte (and refuse it below).
            out = dec.decompress(raw, max(size, 1))
            extra = dec.decompress(dec.unconsumed_tail, 1) if dec.unconsumed_tail else b""
        except zlib.error as exc:
            raise FbxTreeError("a compressed array is corrupt", f"at {prop.start}: {exc}") from None
        if len(out) != size or extra or not dec.eof or dec.unused_data:
            raise FbxTreeError(
                "a compressed array does not hold the number of values it declares",
                f"at {prop.start}: declared {size} bytes, got {len(out)}"
                f"{'+' if extra else ''}, complete={dec.eof}, trailing={len(dec.unused_data)}",
            )
        return np.frombuffer(out, dtype, prop.count)

    def walk(self) -> Iterator[tuple[int, Node]]:
        """Every node with its depth, depth-first (iterative: no recursion limit)."""
        stack = [(0, n) for n in reversed(self.roots)]
        while stack:
            depth, node = stack.pop()
            yield depth, node
            stack.extend((depth + 1, c) for c in reversed(node.children))


class _Parser:
    def __init__(self, data: bytes | mmap.mmap, version: int, max_nodes: int) -> None:
        self.data = data
        self.wide = version >= 7500
        self.head = struct.Struct("<QQQB" if self.wide else "<IIIB")
        self.null_len = 25 if self.wide else 13
        self.max_nodes = max_nodes
        self.count = 0
        self.props_count = 0
        self.max_objects = max(OBJECT_FLOOR, len(data) // BYTES_PER_OBJECT)

    def _fail(self, problem: str, at: int, more: str = "") -> FbxTreeError:
        return FbxTreeError(problem, f"offset {at}{': ' + more if more else ''}")

    def node(self, pos: int, bound: int, depth: int) -> Node | None:
        """The node at ``pos`` (None for a null record); it must end by ``bound``."""
        d = self.data
        if pos + self.head.size > bound:
            raise self._fail("the file is truncated inside a node header", pos, f"bound {bound}")
        end, nprops, plen, nlen = self.head.unpack_from(d, pos)
        if end == 0:
            if pos + self.null_len > bound or any(d[pos : pos + self.null_len]):
                raise self._fail("a node list is not closed properly", pos)
            return None
        if depth > MAX_DEPTH:
            raise self._fail("nodes are nested too deeply", pos, f"depth {depth}")
        self.count += 1
        if self.count > self.max_nodes:
            raise self._fail("it has too many nodes", pos, f"limit {self.max_nodes}")
        self.props_count += nprops  # charged before any of them is built
        if self.props_count > MAX_PROPERTIES or (self.count + self.props_count > self.max_objects):
            raise self._fail(
                "it has more nodes and properties than a file of its size may hold",
                pos,
                f"{self.count} nodes + {self.props_count} properties; limit "
                f"{self.max_objects} objects (1 per {BYTES_PER_OBJECT} bytes, floor "
                f"{OBJECT_FLOOR}), {MAX_PROPERTIES} properties",
            )
        name_at = pos + self.head.size
        props_at = name_at + nlen
        props_end = props_at + plen
        if not props_end <= end <= bound:
            raise self._fail(
                "a node's size does not fit the file",
                pos,
                f"end={end} props_end={props_end} bound={bound}",
            )
        name = bytes(d[name_at:props_at])
        props = self.props(props_at, props_end, nprops)
        node = Node(name, pos, end, props, props_end)
        if props_end < end:
            inner = end - self.null_len
            if inner < props_end or any(d[inner:end]):
                raise self._fail("a node's child list is not closed properly", pos, f"end={end}")
            node.nested = True
            at = props_end
            while at < inner:
                child = self.node(at, inner, depth + 1)
                if child is None:
                    raise self._fail("a node's child list ends early", at)
                node.children.append(child)
                at = child.end
        return node

    def props(self, pos: int, end: int, count: int) -> list[Prop]:
        d = self.data
        if count > end - pos:  # every property takes at least one byte
            raise self._fail("a node declares more properties than it holds", pos)
        out: list[Prop] = []
        for _ in range(count):
            if pos >= end:
                raise self._fail("a property list is truncated", pos)
            code = d[pos : pos + 1]
            body = pos + 1
            if code in _SCALARS:
                fmt = _SCALARS[code]
                nxt = body + struct.calcsize(fmt)
                if nxt > end:
                    raise self._fail("a property is truncated", pos)
                (value,) = struct.unpack_from(fmt, d, body)
                out.append(Prop(code, pos, nxt, value=value))
            elif code in (b"S", b"R"):
                if body + 4 > end:
                    raise self._fail("a property is truncated", pos)
                (n,) = struct.unpack_from("<I", d, body)
                nxt = body + 4 + n
                if nxt > end:
                    raise self._fail("a string property runs past its node", pos, f"len={n}")
                out.append(Prop(code, pos, nxt, data_start=body + 4, data_len=n))
            elif code in ARRAY_DTYPES:
                out.append(self.array(code, pos, body, end))
            else:
                raise self._fail("a property has an unknown type", pos, f"code={code!r}")
            pos = out[-1].end
        if pos != end:
            raise self._fail("a property list has the wrong length", pos, f"expected end {end}")
        return out

    def array(self, code: bytes, pos: int, body: int, end: int) -> Prop:
        if body + 12 > end:
            raise self._fail("an array property is truncated", pos)
        count, encoding, n = struct.unpack_from("<III", self.data, body)
        size = count * np.dtype(ARRAY_DTYPES[code]).itemsize
        nxt = body + 12 + n
        if nxt > end:
            raise self._fail("an array runs past its node", pos, f"bytes={n}")
        if size > MAX_ARRAY_BYTES:
            raise self._fail("an array is too large", pos, f"{size} bytes")
        if encoding == 0 and n != size:
            raise self._fail("an array's size does not match its count", pos, f"{n} != {size}")
        if encoding == 1 and size > ZLIB_MAX_RATIO * n + 1024:
            raise self._fail("a compressed array claims an impossible size", pos, f"{n}->{size}")
        if encoding not in (0, 1):
            raise self._fail("an array has an unknown encoding", pos, f"encoding={encoding}")
        return Prop(
            code, pos, nxt, count=count, encoding=encoding, data_start=body + 12, data_len=n
        )


def read_version(data: bytes | mmap.mmap) -> int:
    """Check the binary header; return the FBX version."""
    if len(data) < HEADER_LEN or data[:23] != MAGIC:
        raise FbxTreeError("it is not a binary FBX file (bad header)", f"head={data[:27]!r}")
    (version,) = struct.unpack_from("<I", data, 23)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise FbxTreeError(
            f"it declares FBX version {version}, which is not supported",
            f"supported {MIN_VERSION}..{MAX_VERSION}",
        )
    return version


def parse(data: bytes | mmap.mmap, *, max_nodes: int = MAX_NODES) -> FbxTree:
    """Parse the whole node tree of a binary FBX file held in ``data``.

    ``data`` may be a read-only ``mmap`` of the file; the tree then refers to it
    and must not be used after the map is closed.
    """
    if not isinstance(data, bytes | mmap.mmap):
        data = bytes(data)
    version = read_version(data)
    p = _Parser(data, version, max_nodes)
    roots: list[Node] = []
    pos = HEADER_LEN
    while True:
        node = p.node(pos, len(data), 0)
        if node is None:
            break
        roots.append(node)
        pos = node.end
    return FbxTree(
        data, version, roots, pos + p.null_len, p.count, p.props_count, memory_budget(len(data))
    )


# --- meshes ----------------------------------------------------------------------------
@dataclass(slots=True)
class Geometry:
    """One ``Objects/Geometry`` node of class ``Mesh`` and its position/polygon arrays."""

    node: Node
    vertices: Prop
    polygons: Prop | None


def geometries(tree: FbxTree) -> list[Geometry]:
    """Every mesh geometry under ``Objects`` that stores positions (blend shapes excluded).

    FBX 7 keeps meshes in ``Geometry`` nodes; FBX 6 kept them in the ``Model``.
    Each mesh has its own node (instances share one), so every mesh is listed.
    A mesh node with two ``Vertices`` or ``PolygonVertexIndex`` lists is refused:
    exporters write one, and readers disagree on which of two they would use.
    """
    objects = tree.root(b"Objects")
    out: list[Geometry] = []
    for geo in objects.children if objects is not None else []:
        # the class is the last property: (id, name, class) in 7.x, (name, class) in 6.x
        if geo.name not in (b"Geometry", b"Model") or len(geo.props) < 2:
            continue
        if geo.props[-1].code != b"S" or tree.string(geo.props[-1]) != b"Mesh":
            continue
        for name in (b"Vertices", b"PolygonVertexIndex"):
            if sum(c.name == name for c in geo.children) > 1:
                # Writers emit one; Blender and ufbx read the first. A second one is a
                # parser differential (another importer may read the unchecked one).
                raise FbxTreeError(
                    f"a mesh has more than one {name.decode()} list",
                    f"geometry at {geo.start}",
                )
        vnode, pnode = geo.child(b"Vertices"), geo.child(b"PolygonVertexIndex")
        if vnode is None or not vnode.props or vnode.props[0].code not in (b"d", b"f"):
            continue  # no positions: nothing to read or mark
        pprop = pnode.props[0] if pnode is not None and pnode.props else None
        if pprop is not None and pprop.code not in (b"i", b"l"):
            raise FbxTreeError("a mesh's polygon list has the wrong type", f"at {pprop.start}")
        out.append(Geometry(geo, vnode.props[0], pprop))
    return out


def points(tree: FbxTree, geo: Geometry) -> np.ndarray:
    """The stored positions as (N, 3) float64."""
    flat = tree.array(geo.vertices)
    if flat.size % 3:
        raise FbxTreeError("a mesh's vertex array is not a list of points", f"{flat.size} values")
    tree.charge(flat.size * 8, f"points of the mesh at {geo.node.start}")
    return flat.astype(np.float64).reshape(-1, 3)


def polygons(tree: FbxTree, geo: Geometry, nverts: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-polygon vertex counts, flat vertex indices), every index checked in range.

    FBX stores the last index of each polygon as ``~index``; an unclosed last
    polygon is closed (as importers do).
    """
    if geo.polygons is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    raw = tree.array(geo.polygons)
    tree.charge(raw.size * 17, f"polygons of the mesh at {geo.node.start}")  # 2 int64 + mask
    pvi = raw.astype(np.int64)
    del raw
    ends = pvi < 0
    idx = np.where(ends, ~pvi, pvi)
    if idx.size and int(idx.max()) >= nverts:
        raise FbxTreeError(
            "a polygon refers to a vertex that does not exist",
            f"index {int(idx.max())} of {nverts} at {geo.polygons.start}",
        )
    stops = np.flatnonzero(ends)
    if idx.size and (stops.size == 0 or stops[-1] != idx.size - 1):
        stops = np.append(stops, idx.size - 1)
    counts = np.diff(np.concatenate([[-1], stops]))
    return counts, idx


# --- writing ---------------------------------------------------------------------------
def encode_array(code: bytes, values: np.ndarray, encoding: int) -> bytes:
    """A whole array property (type code included), raw or zlib like the original."""
    raw = np.ascontiguousarray(values, dtype=ARRAY_DTYPES[code]).tobytes()
    # level 1: marked doubles barely compress, higher levels only cost CPU per delivery
    body = zlib.compress(raw, 1) if encoding == 1 else raw
    count = len(raw) // np.dtype(ARRAY_DTYPES[code]).itemsize
    return code + struct.pack("<III", count, encoding, len(body)) + body


def _footer(tree: FbxTree, out_len: int, version: int) -> bytes:
    """The original footer, its alignment padding recomputed for the new length.

    Writers pad after ``footer id + 4 zero bytes`` to a 16-byte boundary (a
    full 16 when already aligned), then write version, 120 zeros and a magic.
    A footer of another shape is kept as it is.
    """
    foot = tree.data[tree.roots_end :]
    tail_len = 4 + 120 + 16
    pad = len(foot) - 20 - tail_len
    tail = foot[-tail_len:]
    if not (1 <= pad <= 16 and tail.endswith(_FOOTER_MAGIC) and not any(foot[20 : 20 + pad])):
        return foot
    at = out_len + 20
    new_pad = ((at + 15) & ~15) - at or 16
    return foot[:20] + b"\0" * new_pad + struct.pack("<I", version) + tail[4:]


NARROW_LIMIT = 0xFFFFFFFF
"""Largest offset a node header can hold before version 7500 (uint32)."""


def _too_large(version: int, size: int) -> FbxTreeError:
    return FbxTreeError(
        f"the rewritten file would be larger than FBX {version} can address (4 GiB)",
        f"{size} bytes > {NARROW_LIMIT}; only FBX 7500+ has 64-bit offsets",
    )


def _prop_len(d: bytes | mmap.mmap, start: int) -> int:
    """Encoded length of the (already validated) property at ``start``."""
    code = d[start : start + 1]
    if code in _SCALARS:
        return 1 + struct.calcsize(_SCALARS[code])
    if code in (b"S", b"R"):
        return 5 + struct.unpack_from("<I", d, start + 1)[0]
    if code in ARRAY_DTYPES:
        return 13 + struct.unpack_from("<I", d, start + 9)[0]
    raise FbxTreeError("a replaced property is not a property", f"code {code!r} at {start}")


def serialize(
    tree: FbxTree, replace: dict[int, bytes] | None = None, *, version: int | None = None
) -> bytes:
    """The file with the properties whose ``start`` is in ``replace`` swapped.

    ``replace`` maps a property's start offset to its complete new encoding
    (see :func:`encode_array`). End offsets are recomputed throughout.
    ``version`` re-encodes the node headers for another version (32-bit offsets
    before 7500, 64-bit from 7500); by default the file keeps its own.

    Raises FbxTreeError if the result needs offsets past 4 GiB and the version
    has 32-bit ones (a pre-7500 file whose marked arrays compress worse): checked
    before copying when the version is kept, and at every header in any case.
    """
    replace = replace or {}
    d = tree.data
    version = tree.version if version is None else version
    wide = version >= 7500
    if not wide and version == tree.version:
        # Every end offset is at most the new end of the node list: check it before
        # copying anything (a 4 GiB output is not built only to fail at the end).
        growth = sum(len(new) - _prop_len(d, start) for start, new in replace.items())
        if tree.roots_end + growth > NARROW_LIMIT:
            raise _too_large(version, tree.roots_end + growth)
    head = struct.Struct("<QQQB" if wide else "<IIIB")
    null = b"\0" * (25 if wide else 13)
    out = bytearray(d[:23] + struct.pack("<I", version))

    def write(node: Node) -> None:
        at = len(out)
        out.extend(b"\0" * head.size)
        out.extend(node.name)
        props_at = len(out)
        for p in node.props:
            out.extend(replace.get(p.start) or d[p.start : p.end])
        plen = len(out) - props_at
        if node.nested:
            for c in node.children:
                write(c)
            out.extend(null)
        if not wide and len(out) > NARROW_LIMIT:
            raise _too_large(version, len(out))  # never a struct.error
        head.pack_into(out, at, len(out), len(node.props), plen, len(node.name))

    for n in tree.roots:
        write(n)
    out.extend(null)
    out.extend(_footer(tree, len(out), version))
    return bytes(out)
