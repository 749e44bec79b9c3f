"""Method lists and their settings, read from the registry (``fewshot_demo.methods``).

A tab's settings group belongs to an options class (MAML's adaptation steps to ``AdaptationOptions``,
the fine-tune steps to the fine-tune's options): it shows for every method whose spec takes that
class on the tab's modality, and its sliders take their bounds from the class's fields. No UI
behaviour is keyed to a method's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import gradio as gr

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.methods import get_method, methods_for


def method_choice_label(method: str, encoder_id: str | None = None) -> str:
    """What a method list shows: the registry label and the family on this encoder, e.g. "ProtoNet (meta)";
    ProtoNet without a checkpoint for the encoder is "ProtoNet (transfer)"."""
    spec = get_method(method)
    family = spec.family_for(encoder_id) if encoder_id else spec.family
    return f"{spec.label} ({family}{', transductive' if spec.transductive else ''})"


def method_choices(modality: str, encoder_id: str, first: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, key) of every method that runs on the backbone or encoder, the ``first`` ones first."""
    specs = sorted(methods_for(modality, encoder_id), key=lambda s: first.index(s.key) if s.key in first else len(first))
    return [(method_choice_label(s.key, encoder_id), s.key) for s in specs]


def offer_methods(choices: Callable[[str], list[tuple[str, str]]], fallback: str, encoder_id: str, current: str) -> Any:
    """The method dropdown for another backbone or encoder: the current method when it still runs there."""
    offered = choices(encoder_id)
    keys = [key for _, key in offered]
    return gr.Dropdown(choices=offered, value=current if current in keys else fallback)


def takes_options(method: str, modality: str, options_class: type) -> bool:
    """True when the method's options on this modality are ``options_class`` (its settings apply)."""
    return get_method(method).options_class(modality) is options_class


def option_field(options_class: type, name: str) -> dataclasses.Field:
    """The field ``name`` of an options class (its ``metadata`` has min, max, label, choices).

    Raises:
        UserInputError: when the class has no such option.
    """
    found = next((f for f in dataclasses.fields(options_class) if f.name == name), None)
    if found is None:
        raise UserInputError(f"{options_class.__name__} has no option {name!r}")
    return found


def option_slider(options_class: type, name: str, value: float, step: float, label: str = "",
                  **settings: Any) -> gr.Slider:
    """A slider for an option, bounded by its field's ``min``/``max`` metadata (``settings``: more
    ``gr.Slider`` arguments)."""
    metadata = option_field(options_class, name).metadata
    return gr.Slider(metadata.get("min"), metadata.get("max"), value=value, step=step,
                     label=label or metadata.get("label") or name, **settings)


def option_choices(options_class: type, name: str, labels: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(label, value) of an option's allowed values (its field's ``choices`` metadata)."""
    return [((labels or {}).get(choice, choice), choice) for choice in option_field(options_class, name).metadata["choices"]]
