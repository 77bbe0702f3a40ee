import subprocess
import sys

import gradnap

HEAVY = ("torch", "matplotlib", "scipy.cluster", "espeakng_loader", "pocketsphinx", "librosa")


def loaded_after(code: str) -> list[str]:
    """Heavy modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_and_help_load_no_heavy_module():
    assert loaded_after("import gradnap") == []
    help_cli = "from gradnap.cli import build_parser\nbuild_parser().format_help()"
    assert loaded_after(help_cli) == []


def test_public_surface_is_small_and_resolves():
    assert len(gradnap.__all__) <= 12
    for name in gradnap.__all__:
        assert getattr(gradnap, name) is not None
    assert loaded_after("import gradnap; gradnap.GradNAP")[:1] == ["torch"]


def test_unknown_attribute_is_an_attribute_error():
    try:
        gradnap.plot_naps  # noqa: B018 - moved to gradnap.figures
    except AttributeError as exc:
        assert "plot_naps" in str(exc)
    else:
        raise AssertionError("gradnap.plot_naps should not exist at the top level")
