"""What the weight converters share: naming every misfit at once, then setting everything."""

import os

from safeio.checks import UserError


def names(keys, limit=8):
    """``"a, b, c and 4 more"``: the first ``limit`` of ``keys``, sorted."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def set_if_it_fits(model, path, plan, missing, unexpected, wrong_shape, contents, advice):
    """Set ``plan`` (``(layer, values)`` pairs) on ``model``, or, if any tensor is missing,
    unexpected or misshapen, raise one ``ValueError`` naming them all and set nothing."""
    problems = []
    if missing:
        problems.append(f"missing from the file: {names(missing)}")
    if unexpected:
        problems.append(f"in the file but not in the model: {names(unexpected)}")
    if wrong_shape:
        problems.append(f"shapes differ: {'; '.join(wrong_shape[:4])}"
                        + (f" and {len(wrong_shape) - 4} more" if len(wrong_shape) > 4 else ""))
    if problems:
        raise UserError(f"{os.fspath(path)} does not fit {model.name} ({contents}): "
                        + "; ".join(problems) + f". {advice}")
    for layer, values in plan:
        layer.set_weights([value.astype("float32") for value in values])
    return model
