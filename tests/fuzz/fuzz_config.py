"""Fuzz the studio config: ``load_config`` on a temp ``sealport.toml`` (TOML + schema).

``load_config`` is what every client runs at start-up; it reads the file,
parses TOML (stdlib ``tomllib``) and validates every section, key and type
through ``parse_config``. Relative ``ca_file`` paths resolve next to the temp
file, inside the private scratch folder.
"""

from __future__ import annotations

from _harness import fuzz, input_file, instrumented

with instrumented():
    from sealport.config import load_config


def one(data: bytes) -> None:
    load_config(input_file(data, "sealport.toml"))


if __name__ == "__main__":
    fuzz(one)
