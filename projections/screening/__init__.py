"""The screening read model (走访排查, 底数) and its coverage figures: `view.ScreeningView`, and
`visit_coverage(db, street, period)` / `letter_coverage(db, street, period)` for the quarterly
report (`coverage`)."""

from projections.screening.coverage import Span, letter_coverage, visit_coverage

__all__ = ["Span", "letter_coverage", "visit_coverage"]
