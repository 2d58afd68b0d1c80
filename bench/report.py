"""How every benchmark prints its result: the measured figures, then the ratio and its target."""


def report(rows: list[tuple[str, str]], ratio: float, target: float, higher_is_better: bool = True) -> None:
    """Print ``label  value`` rows aligned, then ``ratio R (target >= T): OK|MISSED``."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    met = ratio >= target if higher_is_better else ratio <= target
    print(f"ratio {ratio:.3g} (target {'>=' if higher_is_better else '<='} {target}): {'OK' if met else 'MISSED'}")
