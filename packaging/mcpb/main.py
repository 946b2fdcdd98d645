"""Claude Desktop's way into Doable: `doable mcp` over stdio, with the bundle's settings.

Claude Desktop hands each setting over as an environment variable (manifest.json); a setting the
person left empty arrives empty, or as the unfilled `${user_config.…}` text, and must mean "not
set" (Doable's default data folder), never "the folder named ''".
"""

import os

from doable.cli import main

for name in ("DOABLE_DATA_DIR", "DOABLE_TIMEZONE", "DOABLE_TOKEN"):
    value = os.environ.get(name, "")
    if not value.strip() or value.startswith("${"):
        os.environ.pop(name, None)

main(["mcp"])
