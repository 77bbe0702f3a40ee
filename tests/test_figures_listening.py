from gradnap.analysis.listening import listening_summary
from gradnap.figures import plot_listening_offsets


def test_histogram_draws_the_given_offsets_and_summary():
    offsets = {-4: 1, 4: 2, 12: 5, 20: 2}
    summary = listening_summary(offsets)
    fig = plot_listening_offsets(offsets, summary, bin_ms=8, title="t")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.containers[0]]  # the bars
    assert [round(h, 3) for h in heights] == [0.1, 0.2, 0.5, 0.2]  # shares per 8 ms bin
    lines = {round(line.get_xdata()[0]) for line in ax.lines}
    assert lines == {0, 12}  # receptive-field centre and the median
    assert "median +12 ms" in [t.get_text() for t in ax.get_legend().get_texts()][2]
