"""Summaries of a sweep's results: per grid point, the mean and 95% confidence interval of each score over
its seeds, and how fast its runs reached a validation threshold (from their learning curves).

The interval is Student's t interval of a mean:  mean ± t_{0.975, n-1} · s / √n,  s the sample standard
deviation of the n runs (n >= 2; one run has no interval). It says where the mean over *seeds* lies; a
difference between two grid points is clear when their intervals do not overlap.
"""
import math

# t_{0.975, df} for df = 1..30 (two-sided 95%); larger df use the Cornish-Fisher expansion in `t975`
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788,
         2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
         2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
_Z975 = 1.959964


def t975(df):
    """The 97.5% quantile of Student's t with df degrees of freedom (within 1e-3 beyond the table)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_ci(values):
    """(mean, half-width of the 95% interval or None for fewer than 2 values) of a list of numbers."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t975(n - 1) * sd / math.sqrt(n)


def first_reach(history, threshold):
    """The first validation point at or above `threshold` exact match: (step, seconds), or None."""
    for point in history:
        if point["exact_match"] >= threshold:
            return point["step"], point["seconds"]
    return None


def summarize(rows, keys, histories, threshold):
    """One dict per grid point, in the rows' order: its values, runs, ok runs, and for exact match, token
    accuracy, BLEU, steps and seconds to `threshold` a (mean, half-width) pair; `reached` counts the runs
    whose learning curve got to the threshold (the step/second means are over those runs only);
    `valid_at_end` is the validation exact match of each ok run's last learning-curve point."""
    groups = {}
    for row, history in zip(rows, histories):
        groups.setdefault(tuple(row[k] for k in keys), []).append((row, history))
    out = []
    for values, members in groups.items():
        ok = [(row, h) for row, h in members if row["status"] == "ok"]
        reach = [r for r in (first_reach(h, threshold) for _, h in ok) if r is not None]
        summary = {"values": dict(zip(keys, values)), "runs": len(members), "ok": len(ok), "reached": len(reach)}
        for name in ("test_exact_match", "test_token_accuracy", "test_bleu"):
            summary[name] = mean_ci([float(row[name]) for row, _ in ok])
        summary["steps_to"] = mean_ci([float(step) for step, _ in reach])
        summary["seconds_to"] = mean_ci([float(sec) for _, sec in reach])
        summary["valid_at_end"] = mean_ci([h[-1]["exact_match"] for _, h in ok if h])
        out.append(summary)
    return out


def format_interval(pair, scale=1.0, digits=1):
    mean, half = pair
    if mean is None:
        return "-"
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {half * scale:.{digits}f}" if half is not None else "")


def format_summary(summary, keys, threshold):
    """A Markdown table of `summarize`'s output: scores in percent with their 95% intervals."""
    head = list(keys) + ["runs", "test exact match %", "token accuracy %", "BLEU",
                         f"steps to {threshold:.0%}", f"seconds to {threshold:.0%}", "reached"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [s["values"][k] for k in keys] + [
            f"{s['ok']}/{s['runs']}" if s["ok"] != s["runs"] else str(s["runs"]),
            format_interval(s["test_exact_match"], 100), format_interval(s["test_token_accuracy"], 100),
            format_interval(s["test_bleu"]), format_interval(s["steps_to"], digits=0),
            format_interval(s["seconds_to"], digits=0), f"{s['reached']}/{s['ok']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
