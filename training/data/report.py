"""Human-readable rendering of the cache stats (`comper-train data stats`)."""

from __future__ import annotations


def format_stats(stats: dict) -> str:
    lines = [f"cache: {stats['songs_kept']} songs, {stats['frames']:,} frames "
             f"({stats['frames'] / 4 / 2 / 3600:.1f} h at 120 bpm), built in {stats.get('build_seconds', '?')} s",
             "",
             f"{'source':<22}{'found':>7}{'kept':>7}{'skipped':>9}{'frames':>11}{'notes':>10}"
             f"{'exact':>9}{'mapped':>9}  splits"]
    for name, s in stats["sources"].items():
        exact = "-" if s["exact_fraction"] is None else f"{100 * s['exact_fraction']:.2f}%"
        mapped = "-" if s["mapped_fraction"] is None else f"{100 * s['mapped_fraction']:.2f}%"
        splits = " ".join(f"{k}={v}" for k, v in s["splits"].items())
        lines.append(f"{name:<22}{s['songs_found']:>7}{s['songs_kept']:>7}{s['songs_skipped']:>9}"
                     f"{s['frames']:>11,}{s['melody_notes']:>10,}{exact:>9}{mapped:>9}  {splits}")
    lines.append("")
    for name, s in stats["sources"].items():
        if s["skip_reasons"]:
            reasons = "; ".join(f"{r}: {n}" for r, n in s["skip_reasons"].items())
            lines.append(f"skipped in {name}: {reasons}")
        if s["top_simplified_labels"]:
            top = ", ".join(f"{k} ({v:g} beats)" for k, v in list(s["top_simplified_labels"].items())[:6])
            lines.append(f"simplified in {name}: {top}")
        if s["top_unmapped_labels"]:
            top = ", ".join(f"{k} ({v:g} beats)" for k, v in s["top_unmapped_labels"].items())
            lines.append(f"unmapped in {name}: {top}")
    v = stats["vocabulary"]
    lines += ["", f"vocabulary: {v['tokens']} tokens, {v['chords_in_table']} chords in the table, "
                  f"{v['chords_used']} used in the data",
              "most common chords (share of chord frames): "
              + ", ".join(f"{c['chord']} {100 * c['share']:.1f}%" for c in stats["top_chords"])]
    return "\n".join(lines)
