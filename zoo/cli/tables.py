"""How the command line shows the evaluation tables to people: error rates in percent, as
the README and the papers write them (the CSV files keep fractions, for programs)."""

ERROR_COLUMNS = ("top1_error", "top5_error", "val_top1_error")  # (the last: zoo search's)


def for_people(table, digits=4):
    """A copy of ``table`` with the error columns, and the members' disagreement (a fraction
    of the examples too), as ``"2.22 %"`` and the other numbers rounded to ``digits``.

    Example:

    >>> import pandas as pd
    >>> shown = for_people(pd.DataFrame({"top1_error": [0.0222], "nll": [0.06591]}))
    >>> shown.iloc[0, 0], float(shown.iloc[0, 1])
    ('2.22 %', 0.0659)
    >>> for_people(pd.DataFrame({"disagreement": [float("nan"), 0.25]}))["disagreement"].tolist()
    [nan, '25.00 %']
    """
    shown = table.round(digits)
    for column in ERROR_COLUMNS + ("disagreement",):
        if column in shown.columns:  # (NaN kept: the members' rows have no disagreement)
            shown[column] = table[column].map(lambda v: f"{100 * v:.2f} %" if v == v else v)
    return shown
