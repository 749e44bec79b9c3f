"""The comparison's results in plain language: which method wins at each K-shot, by how much, whether
the gap is real, and what transfer, meta-learning and self-supervised pretraining each bought.

    print(reading(update.summaries(), update.results))     # Markdown
"""

from __future__ import annotations

from typing import Callable, Sequence

from fewshot_demo.bench.comparison import method_family, method_label
from fewshot_demo.bench.results import MethodResult
from fewshot_demo.core.evaluation import EvaluationSummary, paired_difference
from fewshot_demo.methods import get_method

#: (method, K-shot) -> that method's accuracy on each episode, in episode order.
PerEpisode = dict[tuple[str, int], list[float]]
#: (K-shot, winning family, separated beyond the intervals, best transfer, best meta).
Verdict = tuple[int, str, bool, EvaluationSummary, EvaluationSummary]

FAMILIES_NOTE = (
    "*Families:* transfer methods adapt an ImageNet-pretrained backbone on the support set; meta-learners were "
    "trained on labelled episodes of base classes; self-supervised methods were pretrained on base images "
    "without labels; baselines are the same networks with random weights.")
CONTEXT_NOTE = (
    "*Context:* with a strong pretrained backbone, a linear probe (or a cosine classifier) on frozen features "
    "is hard to beat (Chen et al. 2019, \"A Closer Look at Few-shot Classification\"; Tian et al. 2020, "
    "\"Rethinking Few-Shot Image Classification\"). Meta-learning tends to matter when no good pretrained "
    "representation exists, e.g. small networks trained from scratch on 28x28 pixels. Intervals are "
    "1.96 x std / sqrt(episodes) over episodes; when episodes reuse the same few items they understate "
    "the real uncertainty."
)
PRETRAINING_INTRO = (
    "**What did pretraining without labels buy?** The self-supervised methods pretrained the same Conv-4 the "
    "meta-learners use on the same base images, without their labels, and read it with a linear head fitted on "
    "the support; set against the random Conv-4 they show "
    "what the unlabelled images alone teach, and against the meta-trained one what the base classes' labels "
    "add. "
)


def _name(method: str) -> str:
    return method_label(method)


def reading(summaries: Sequence[EvaluationSummary], results: Sequence[MethodResult] | None = None) -> str:
    """A plain-language verdict from the numbers, per K-shot: which method wins, by how much, and
    whether the gap is larger than the confidence intervals.

    Args:
        summaries: one per method and K-shot (on the same episodes for a given K-shot).
        results: the matching results with per-episode accuracies, for a paired test of the gap
            (more sensitive than comparing intervals, because every method saw the same episodes).

    Returns:
        Markdown: one paragraph per K-shot, the transfer-vs-meta verdict, what the self-supervised
        results say (against the same network with random weights and the meta-trained one), and the
        known findings.
    """
    if not summaries:
        return "No results yet."
    per_episode = {(r.method, r.n_shot): r.episode_accuracies for r in (results or [])}
    families = {r.method: r.family for r in (results or [])}
    family = lambda method: families.get(method) or method_family(method)  # noqa: E731
    paragraphs: list[str] = []
    verdicts: list[Verdict] = []
    pretraining: list[str] = []
    for n_shot in sorted({s.n_shot for s in summaries}):
        ranked = sorted((s for s in summaries if s.n_shot == n_shot), key=lambda s: -s.accuracy)
        paragraphs.append(_shot_paragraph(n_shot, ranked, per_episode))
        if len(ranked) == 1:
            continue
        transfer = [s for s in ranked if family(s.method) == "transfer"]
        meta = [s for s in ranked if family(s.method) == "meta"]
        if transfer and meta:
            t, m = transfer[0], meta[0]
            separated = abs(t.accuracy - m.accuracy) > t.ci95 + m.ci95
            verdicts.append((n_shot, "transfer" if t.accuracy >= m.accuracy else "meta", separated, t, m))
        self_supervised = [s for s in ranked if family(s.method) == "self-supervised"]
        if self_supervised:
            pretraining.append(_pretraining_sentence(n_shot, self_supervised[0], ranked, family, per_episode))
    if verdicts:
        paragraphs.append(_verdict_paragraph(verdicts))
    if pretraining:
        paragraphs.append(PRETRAINING_INTRO + " ".join(pretraining))
    paragraphs += [FAMILIES_NOTE, CONTEXT_NOTE]
    return "\n\n".join(paragraphs)


def _paired(per_episode: PerEpisode, first: str, second: str, n_shot: int) -> tuple[float, float] | None:
    """The paired difference (mean, 95% CI) of two methods on the same episodes, None where not both ran them."""
    a, b = per_episode.get((first, n_shot)), per_episode.get((second, n_shot))
    if a is None or b is None or len(a) != len(b):
        return None
    return paired_difference(a, b)


def _shot_paragraph(n_shot: int, ranked: Sequence[EvaluationSummary], per_episode: PerEpisode) -> str:
    """The winner at one K-shot against the runner-up: the gap, the intervals, the paired test, the cost."""
    best = ranked[0]
    if len(ranked) == 1:
        return f"**{n_shot}-shot:** only {_name(best.method)} ran: {best.accuracy:.1%} ± {best.ci95:.1%}."
    second = ranked[1]
    gap = best.accuracy - second.accuracy
    overlap = best.accuracy - best.ci95 <= second.accuracy + second.ci95
    text = (f"**{n_shot}-shot:** {_name(best.method)} wins with {best.accuracy:.1%} ± {best.ci95:.1%}, "
            f"{100 * gap:.1f} points ahead of {_name(second.method)} ({second.accuracy:.1%} ± {second.ci95:.1%}). ")
    if overlap:
        text += "Their 95% intervals overlap, so the gap is not larger than the intervals"
    else:
        text += "Their 95% intervals do not overlap: the gap is larger than the intervals"
    paired = _paired(per_episode, best.method, second.method, n_shot)
    if paired is not None:
        mean, ci = paired
        text += (f"; on the same episodes the paired difference is {100 * mean:+.1f} ± {100 * ci:.1f} points, "
                 + ("so it is a real difference on this data." if mean - ci > 0 else "which includes zero: call it a tie."))
    else:
        text += "."
    slowest, fastest = max(ranked, key=lambda s: s.ms_per_episode), min(ranked, key=lambda s: s.ms_per_episode)
    if fastest.ms_per_episode > 0 and slowest.ms_per_episode / fastest.ms_per_episode >= 10:
        text += (f" Cost: {_name(slowest.method)} needs {slowest.ms_per_episode:.0f} ms per episode, "
                 f"{_name(fastest.method)} {fastest.ms_per_episode:.1f} ms.")
    return text


def _verdict_paragraph(verdicts: Sequence[Verdict]) -> str:
    """Should you meta-learn or just transfer: the best of each family at every K-shot where both ran."""
    parts = []
    for n_shot, winner, separated, t, m in verdicts:
        lead, other = (t, m) if winner == "transfer" else (m, t)
        parts.append(f"{n_shot}-shot: best {winner} method {_name(lead.method)} {lead.accuracy:.1%} vs "
                     f"{_name(other.method)} {other.accuracy:.1%} ({'clear' if separated else 'within the intervals'})")
    transfer_wins = all(v[1] == "transfer" or not v[2] for v in verdicts)
    return ("**Should you meta-learn or just transfer here?** "
            + ("Just transfer: " if transfer_wins else "Meta-learning pays off here: ") + "; ".join(parts) + ".")


def _pretraining_sentence(
    n_shot: int, best: EvaluationSummary, ranked: Sequence[EvaluationSummary], family: Callable[[str], str],
    per_episode: PerEpisode,
) -> str:
    """One sentence per K-shot: the best self-supervised method against the random network and the
    best meta-learned one (paired on the same episodes where both ran)."""
    parts = []
    for other_family, name in (("baseline", "the random Conv-4"), ("meta", "the best meta-learned method")):
        others = [s for s in ranked if family(s.method) == other_family]
        # The random Conv-4 read the way the self-supervised methods read theirs, where it ran.
        others.sort(key=lambda s: _controls(s.method) != "self-supervised")
        if not others:
            continue
        other = others[0]
        paired = _paired(per_episode, best.method, other.method, n_shot)
        if paired is not None:
            mean, ci = paired
            verdict = "ahead" if mean - ci > 0 else "behind" if mean + ci < 0 else "tied"
            parts.append(f"{100 * mean:+.1f} ± {100 * ci:.1f} points against {name} ({_name(other.method)}, "
                         f"{other.accuracy:.1%}; paired: {verdict})")
        else:
            parts.append(f"{100 * (best.accuracy - other.accuracy):+.1f} points against {name} "
                         f"({_name(other.method)}, {other.accuracy:.1%})")
    if not parts:
        return f"{n_shot}-shot: {_name(best.method)} {best.accuracy:.1%} ± {best.ci95:.1%}."
    return f"{n_shot}-shot: {_name(best.method)} {best.accuracy:.1%}, " + "; ".join(parts) + "."


def _controls(method: str) -> str | None:
    """The family of the method a baseline controls (None for other methods)."""
    controlled = get_method(method).baseline_of
    return get_method(controlled).family if controlled else None
