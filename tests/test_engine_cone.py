import pytest
import torch
from torch import nn

from gradnap.engine import ConeEngine, ReferenceEngine, default_layers, extract_chain
from gradnap.errors import GradnapError
from test_engine_models import (
    N_FEATURES,
    TorchaudioLike,
    assert_engines_agree,
    expand,
    mixed_model,
    rel_err,
    single_thread,  # noqa: F401
    tiny_wav2letter,
)


def _pair(model, layers=None, target="prob", **kw):
    layers = layers or default_layers(model)
    return ConeEngine(model, layers, target, **kw), ReferenceEngine(model, layers, target)


@pytest.mark.parametrize("target", ["prob", "logprob", "logit"])
@pytest.mark.parametrize("frames", [5, 60, 193, 400, 401])
def test_wav2letter_every_frame_equals_reference(target, frames):
    # receptive field 194: 5 and 60 frames are shorter than it, 400/401 are even/odd
    model = tiny_wav2letter()
    cone, ref = _pair(model, target=target)
    torch.manual_seed(frames)
    n = assert_engines_agree(cone, ref, torch.randn(N_FEATURES, frames))
    assert n == model.geometry.output_length(frames)


def test_windows_are_cone_wide_and_start_at_the_cone():
    model = tiny_wav2letter()
    cone, _ = _pair(model)
    fwd = cone.forward(torch.randn(N_FEATURES, 300))
    frames = torch.tensor([0, 7, 149])
    out = cone.sensitivities(fwd, frames, torch.tensor([1, 2, 3]))
    geom = model.geometry
    for layer, name in enumerate(cone.layers):
        assert out[name].grads.shape[-1] == geom.cone_width(layer)
        assert out[name].start.tolist() == [geom.cone(int(t), layer)[0] for t in frames]
    assert out["input"].grads.shape == (3, N_FEATURES, 194)


@pytest.mark.parametrize("target", ["prob", "logprob"])
@pytest.mark.parametrize("frames", [9, 20, 101])
def test_strides_dilation_padding_batchnorm(target, frames):
    model = mixed_model()
    layers = ["input", "bn1", "act1", "conv2", "act2", "drop", "act3", "bn3", "conv4"]
    layers += ["conv5", "act5", "out"]
    cone, ref = _pair(model, layers, target)
    torch.manual_seed(frames)
    assert_engines_agree(cone, ref, torch.randn(N_FEATURES, frames))


def test_batchnorm_is_folded_into_the_preceding_conv():
    model = mixed_model()
    chain = extract_chain(model)
    # conv1 + bn1 fold; bn3 follows an activation and stays an elementwise affine map
    assert "conv1" not in chain.positions
    assert chain.positions["bn1"] == (1, 0)
    assert chain.positions["bn3"] == (3, 2)
    assert len(chain.stages[3].pointwise) == 2
    with pytest.raises(GradnapError, match="folded"):
        ConeEngine(model, ["input", "conv1"])


@pytest.mark.parametrize("target", ["prob", "logprob"])
def test_torchaudio_layout_with_log_softmax_output(target):
    model = TorchaudioLike()
    assert default_layers(model) == ["input"] + [f"acoustic_model.{i}" for i in (1, 3, 5, 7)]
    layers = ["input", "acoustic_model.0", "acoustic_model.1", "acoustic_model.4"]
    layers += ["acoustic_model.7"]
    cone, ref = _pair(model, layers, target)
    assert cone.output == "log_probs"
    for frames in (11, 40, 41):
        torch.manual_seed(frames)
        assert_engines_agree(cone, ref, torch.randn(N_FEATURES, frames))


def test_declared_output_kind_must_match():
    model = TorchaudioLike()
    with pytest.raises(GradnapError, match="looks like log_probs"):
        ConeEngine(model, ["input"], output="logits")
    with pytest.raises(GradnapError, match="logit"):
        ConeEngine(model, ["input"], target="logit")


def test_pre_activation_layers():
    model = tiny_wav2letter()
    layers = ["input", "layer1.conv", "layer1", "layer5.conv", "layer9.conv", "layer11.conv"]
    cone, ref = _pair(model, layers)
    assert_engines_agree(cone, ref, torch.randn(N_FEATURES, 250))


def test_subset_of_frames_in_any_order_and_workers():
    model = tiny_wav2letter()
    layers = ["input", "layer3", "layer10"]
    x = torch.randn(N_FEATURES, 280)
    ref = ReferenceEngine(model, layers)
    rfwd = ref.forward(x)
    gen = torch.Generator().manual_seed(0)
    frames = torch.cat([torch.tensor([139, 0, 5, 5]), torch.randint(0, 140, (30,), generator=gen)])
    classes = torch.randint(0, 5, frames.shape, generator=gen)
    want = ref.sensitivities(rfwd, frames, classes)
    for workers in (0, 1, 3):
        eng = ConeEngine(model, layers, workers=workers)
        got = eng.sensitivities(eng.forward(x), frames, classes)
        for name in layers:
            length = want[name].grads.shape[-1]
            assert rel_err(expand(got[name], length), want[name].grads) <= 1e-4


def test_activations_and_probs():
    model = tiny_wav2letter()
    cone, _ = _pair(model, ["input", "layer2", "layer11"])
    x = torch.randn(N_FEATURES, 100)
    fwd = cone.forward(x)
    with torch.no_grad():
        torch.testing.assert_close(fwd.probs, model.probs(x[None])[0])
        torch.testing.assert_close(
            fwd.activations["layer2"], nn.Sequential(model.layer1, model.layer2)(x[None])[0]
        )
    assert fwd.activations["input"] is not None and fwd.activations["input"].shape == x.shape


def test_errors():
    model = tiny_wav2letter()
    cone, _ = _pair(model, ["input"])
    with pytest.raises(GradnapError, match="too few"):
        cone.forward(torch.randn(N_FEATURES, 1))
    fwd = cone.forward(torch.randn(N_FEATURES, 50))
    with pytest.raises(GradnapError, match="frames must lie"):
        cone.sensitivities(fwd, torch.tensor([25]), torch.tensor([0]))
    with pytest.raises(GradnapError, match="classes must lie"):
        cone.sensitivities(fwd, torch.tensor([0]), torch.tensor([5]))
    with pytest.raises(GradnapError, match="unknown target"):
        ConeEngine(model, ["input"], target="probability")
    empty = cone.sensitivities(fwd, torch.tensor([], dtype=torch.int64), torch.tensor([]))
    assert empty["input"].grads.shape == (0, N_FEATURES, 194)


def test_unsupported_models_are_refused():
    from gradnap.engine import ChainError

    lstm = nn.Sequential(nn.Conv1d(N_FEATURES, 4, 3), nn.LSTM(4, 4))
    with pytest.raises(ChainError, match="LSTM"):
        ConeEngine(lstm, ["input"])
    grouped = nn.Sequential(nn.Conv1d(N_FEATURES, 4, 3, groups=2))
    with pytest.raises(ChainError, match="grouped"):
        ConeEngine(grouped, ["input"])
    training = nn.Sequential(nn.Conv1d(N_FEATURES, 4, 3), nn.BatchNorm1d(4)).train()
    # the engine puts the model in eval mode itself
    ConeEngine(training, ["input"])
    assert not training.training


@pytest.mark.parametrize(
    "specs",
    [
        # (kernel, stride, dilation, padding): k=1 with stride 3 leaves stride phases
        # without taps; dilation with stride; a dilated last layer (one-wide cone)
        [(1, 3, 1, 0), (3, 1, 1, "same"), (2, 1, 3, "same")],
        [(3, 2, 2, 2), (4, 3, 1, 1), (3, 1, 2, 0)],
        [(5, 1, 1, 0), (2, 2, 1, 0), (1, 1, 1, 0)],
    ],
)
def test_kernel_stride_dilation_combinations(specs):
    torch.manual_seed(1)
    mods, c_in = [], N_FEATURES
    for i, (k, s, d, p) in enumerate(specs):
        c_out = 5 if i == len(specs) - 1 else 4
        mods.append(nn.Conv1d(c_in, c_out, k, stride=s, dilation=d, padding=p))
        if i < len(specs) - 1:
            mods.append(nn.Softplus())
        c_in = c_out
    model = nn.Sequential(*mods).eval()
    layers = ["input"] + [str(i) for i in range(len(mods))]
    cone, ref = _pair(model, layers, "logprob")
    for frames in (30, 41, 80):
        assert_engines_agree(cone, ref, torch.randn(N_FEATURES, frames))


def _compare_frames(model, frames_in, frames, layers=None):
    layers = layers or default_layers(model)
    cone, ref = _pair(model, layers)
    x = torch.randn(model.config.n_features, frames_in)
    fwd, rfwd = cone.forward(x), ref.forward(x)
    frames = torch.tensor(frames)
    classes = fwd.probs.argmax(0)[frames]
    got, want = cone.sensitivities(fwd, frames, classes), ref.sensitivities(rfwd, frames, classes)
    for name in layers:
        err = rel_err(expand(got[name], want[name].grads.shape[-1]), want[name].grads)
        assert err <= 1e-4, f"{name}: {err:.3g}"


def test_default_config_model():
    from gradnap.asr.model import build_model

    torch.manual_seed(0)
    _compare_frames(build_model("default", seed=0), 301, [0, 1, 75, 148, 149])


@pytest.mark.slow
def test_paper_config_model():
    from gradnap.asr.model import build_model

    torch.manual_seed(0)
    _compare_frames(build_model("paper", seed=0), 1251, [0, 97, 312, 624])


def test_elementwise_operations_on_the_input():
    # batch norm with no convolution before it stays an elementwise map of stage 0
    torch.manual_seed(2)
    bn = nn.BatchNorm1d(N_FEATURES)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    model = nn.Sequential(
        bn, nn.Tanh(), nn.Conv1d(N_FEATURES, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 5, 1)
    ).eval()
    chain = extract_chain(model)
    assert chain.positions["0"] == (0, 1) and chain.positions["1"] == (0, 2)
    cone, ref = _pair(model, ["input", "0", "1", "3"], "logprob")
    assert_engines_agree(cone, ref, torch.randn(N_FEATURES, 21))


def test_worker_threads_are_kept_across_calls_and_results_identical():
    import pickle

    model = tiny_wav2letter()
    layers = ["input", "layer3", "layer11"]
    eng = ConeEngine(model, layers, workers=2)
    x = torch.randn(N_FEATURES, 300)
    frames = torch.arange(0, 40)
    fwd = eng.forward(x)
    classes = fwd.probs.argmax(0)[frames]
    first = eng.sensitivities(fwd, frames, classes)
    pool = eng._workers._pool
    assert pool is not None
    again = eng.sensitivities(eng.forward(x), frames, classes)
    assert eng._workers._pool is pool  # one pool per engine, not one per call
    for name in layers:
        assert torch.equal(first[name].grads, again[name].grads)
    # a pickled engine carries no threads and starts its own
    copy = pickle.loads(pickle.dumps(eng))
    assert copy._workers._pool is None
    got = copy.sensitivities(copy.forward(x), frames, classes)
    assert copy._workers._pool is not None and copy._workers._pool is not pool
    for name in layers:
        assert torch.equal(first[name].grads, got[name].grads)
    eng.close()
    assert eng._workers._pool is None
    after = eng.sensitivities(eng.forward(x), frames, classes)  # restarts its threads
    for name in layers:
        assert torch.equal(first[name].grads, after[name].grads)
    eng.close()
    copy.close()


def test_non_contiguous_input():
    model = tiny_wav2letter()
    cone, ref = _pair(model, ["input", "layer1", "layer11"])
    x = torch.randn(250, N_FEATURES).T  # (F, T) with strides (1, F)
    assert not x.is_contiguous()
    assert_engines_agree(cone, ref, x)


def _sensitivities_in_child(eng, x, frames, classes, queue):
    got = eng.sensitivities(eng.forward(x), frames, classes)
    queue.put({name: w.grads.numpy().copy() for name, w in got.items()})  # no fd sharing


def test_forked_child_starts_its_own_worker_threads():
    import multiprocessing as mp

    model = tiny_wav2letter()
    eng = ConeEngine(model, ["input", "layer5"], workers=2)
    x = torch.randn(N_FEATURES, 260)
    frames = torch.arange(0, 33)
    fwd = eng.forward(x)
    classes = fwd.probs.argmax(0)[frames]
    want = eng.sensitivities(fwd, frames, classes)  # the parent's threads exist now
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_sensitivities_in_child, args=(eng, x, frames, classes, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    for name, w in want.items():
        assert torch.equal(torch.from_numpy(got[name]), w.grads)
    eng.close()


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_threading_modes_equal_reference(workers):
    # sliced forward (elementwise ops, batch norm after an activation, derivatives per
    # time slice) on several workers, and torch's own threads (workers=0)
    model = mixed_model()
    layers = ["input", "bn1", "act1", "conv2", "act2", "act3", "bn3", "conv5", "out"]
    cone, ref = _pair(model, layers, "prob", workers=workers)
    for frames in (20, 101, 300):
        torch.manual_seed(frames)
        assert_engines_agree(cone, ref, torch.randn(N_FEATURES, frames))
    cone.close()


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_contiguous_windows_hold_the_same_values(workers):
    # contiguous=True: (n, C, W) tensors transposed by the workers (or at the end), the
    # same numbers as the default views of (C, W, n) buffers; chunks of one piece too
    model = tiny_wav2letter()
    layers = ["input", "layer1", "layer5", "layer11"]
    eng = ConeEngine(model, layers, workers=workers)
    fwd = eng.forward(torch.randn(N_FEATURES, 300))
    for frames in (torch.arange(0, 5), torch.arange(3, 136), torch.tensor([140, 2, 77, 77])):
        classes = fwd.probs[:, frames].argmax(0)
        views = eng.sensitivities(fwd, frames, classes)
        flat = eng.sensitivities(fwd, frames, classes, contiguous=True)
        for name in layers:
            assert flat[name].grads.is_contiguous()
            assert torch.equal(flat[name].grads, views[name].grads)
            assert torch.equal(flat[name].start, views[name].start)
    empty = eng.sensitivities(fwd, frames[:0], classes[:0], contiguous=True)
    assert empty["layer1"].grads.shape == (0, 3, eng.geometry.cone_width(1))
    eng.close()
