"""Writing a benchmark's result."""
import json
import os


def write_json(path, result):
    """Write ``result`` to ``path`` as indented JSON (its folder made if needed); returns ``result``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result
