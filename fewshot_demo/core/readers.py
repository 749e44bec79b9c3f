"""The support reader of each modality (see ``core.support``)."""

from __future__ import annotations

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.image_task import ImageReader
from fewshot_demo.core.support import SupportReader
from fewshot_demo.core.text_task import TextReader

READERS: dict[str, SupportReader] = {reader.modality: reader for reader in (ImageReader(), TextReader())}


def reader_for(modality: str) -> SupportReader:
    """The reader of ``modality`` ("image" or "text").

    Raises:
        UserInputError: for any other modality.
    """
    if modality not in READERS:
        raise UserInputError(f"modality must be one of {', '.join(READERS)}, not {modality!r}")
    return READERS[modality]
