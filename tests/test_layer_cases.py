"""tests/layer_cases.py covers the layer registry exactly: a registered layer kind without a
case, or a case of a kind that is not registered, fails here, as does a case without its
float64 reference in tests/reference.py. The tests that read the cases (layers, gradients,
CUDA simulator, PTX, ONNX, PyTorch twins, model files, fuzz) then cover every layer."""

from __future__ import annotations

import pytest
import reference as ref
from layer_cases import LAYER_CASES, REFERENCE_CASES, LayerCase

from numbacnn.layers import LAYERS
from numbacnn.network import Network


def test_every_registered_layer_kind_has_exactly_one_case():
    missing = sorted(set(LAYERS) - set(LAYER_CASES))
    unknown = sorted(set(LAYER_CASES) - set(LAYERS))
    assert not missing, f"registered layer kinds without a case in tests/layer_cases.py: " \
                        f"{missing}"
    assert not unknown, f"cases in tests/layer_cases.py of unregistered kinds: {unknown}"


def test_every_case_but_the_loss_has_a_float64_reference():
    missing = sorted(set(REFERENCE_CASES) - set(ref.REFERENCES))
    unused = sorted(set(ref.REFERENCES) - set(REFERENCE_CASES))
    assert not missing, f"layer kinds without a reference (an entry in tests/reference.py's " \
                        f"REFERENCES, or elementwise=(f, f′) in the case): " \
                        f"{missing}"
    assert not unused, f"REFERENCES entries without a case in tests/layer_cases.py: {unused}"


@pytest.mark.parametrize("kind", LAYER_CASES)
def test_case_makes_its_kind_and_its_network_builds(kind: str):
    """The spec text makes a layer of the case's kind; the case's tiny classifier builds for
    its input shape and holds the layer."""
    case: LayerCase = LAYER_CASES[kind]
    layer = case.make()
    assert layer.kind == kind == type(layer).syntax.name
    assert case.inputs in ("normal", "distinct", "away")
    net = Network.from_spec(case.network_spec())
    assert net.input_shape == case.shape[1:]
    kinds = {layer.kind for layer in net.layers}
    if net.explicit_loss:
        kinds.add(net.loss.kind)
    assert kind in kinds, (kind, sorted(kinds))
