"""The BERM-O artifact at serving time.

online.py        the artifact folder, loaded once, reranking one query's candidates
onnx_runner.py   ONNX Runtime sessions and the exported graphs' names
text_encoder.py  the bi-encoder as ONNX, for queries and items the artifact has not seen

`ArtifactError` is here, with no imports, so the server's light modules can name it without
loading the artifact code.
"""

from common.errors import ShopsearchError


class ArtifactError(ShopsearchError):
    """A missing or corrupt artifact; the message is one line."""
