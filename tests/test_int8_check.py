"""ptcli.exporting.quantize.check: an INT8 classifier's agreement is reported on every held-out
input and on those whose top-1 fp32 decides, so a refusal says whether the flips were near ties."""

import pytest
import torch

from ptcli.exporting import quantize


class Margin(torch.nn.Module):
    """Two classes whose logits differ by each input's first value: an input whose first value
    is tiny is a near tie, one whose first value is large is decided."""

    def forward(self, x):
        first = x.reshape(x.shape[0], -1)[:, :1]
        return torch.cat([first, torch.zeros_like(first)], 1)


def test_the_check_tells_the_inputs_fp32_decides_from_near_ties():
    from ptcli.exporting.spec import Exportable

    draw = torch.Generator().manual_seed(0)
    x = torch.rand(10, 3, 8, 8, generator=draw) * 2 - 1  # a range of 2: half an 8-bit step is 1/255
    x[:, 0, 0, 0] = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.3, 1e-5, -1e-5, 2e-5, 0.8, -0.8])  # 5-7: near ties
    exportable = Exportable(module=Margin(), input_names=("x",), output_names=("y",), sample=None, meta={})
    sure = quantize.decided(exportable.module, (x,), exportable.module(x).argmax(-1))
    assert sure.tolist() == [True] * 5 + [False] * 3 + [True] * 2

    def flipping(rows):  # an "INT8" model that flips the near ties and one decided input
        out = Margin()(rows)
        flipped = torch.zeros(len(rows), dtype=torch.bool)
        flipped[[5, 6, 7, 9]] = True
        return torch.where(flipped[:, None], out.flip(1), out)

    passed, figures, why = quantize.check(exportable, flipping, (x,), 0.9)
    assert not passed and figures["value"] == 0.6 and figures["decided_inputs"] == 7
    assert figures["decided_agreement"] == pytest.approx(6 / 7, abs=1e-6)
    assert why == ("top-1 agrees with the eager model on 60.0% of 10 held-out inputs, under 90.0% "
                   "(6 of the 7 whose top-1 fp32 decides; the others are near ties)")


def test_token_inputs_have_no_rounding_so_every_row_is_decided():
    class Tokens(torch.nn.Module):
        def forward(self, ids):
            return torch.nn.functional.one_hot(ids[:, 0] % 3, 3).float()

    ids = torch.arange(12).reshape(6, 2)
    assert quantize.decided(Tokens(), (ids,), Tokens()(ids).argmax(-1)).all()


@pytest.mark.parametrize(("decided", "shown"), [(7, True), (10, False)])
def test_the_report_names_the_decided_inputs_only_where_there_are_near_ties(capsys, decided, shown):
    from ptcli.cli.commands.export_cmd import print_report

    check = {"passed": False, "held_out_inputs": 10, "eager_ms": 3.0, "exported_ms": 1.0, "tolerance": 0.95,
             "metric": "top1_agreement", "value": 0.6, "decided_inputs": decided, "decided_agreement": 6 / 7}
    print_report({"size_bytes": 1e6, "batch": None, "output": "m.onnx", "format": "onnx", "exporter": "x", "int8": True,
                  "check": check}, failed=True)
    err = capsys.readouterr().err
    assert "top1_agreement on 10 held-out inputs: 60.0% (kept at >= 95.0%)" in err
    assert ("on the 7 whose top-1 fp32 decides (it survives half an 8-bit step of noise; the others are near ties): 85.7%" in err) is shown
