"""The phase diagram for tanh on MNIST-1D: does training succeed inside the band that mean-field
theory predicts (depth below about 6 xi_c) and fail well outside it?

Width 100, depths 10-100, sigma_w^2 1-4 (the critical 1.76 included), sigma_b^2 = 0.05, 300 SGD
steps per cell at batch 128. Writes docs/phase_tanh.png and a section of docs/RESULTS.md.

Run: python benchmarks/theory_phase.py [--quick]   (--quick: a 2 x 2 grid of 20 steps, a smoke run)
"""

from __future__ import annotations

import argparse

from _results import DOCS, machine, write_section

from trainability.theory.phase import phase_diagram, plot_phase


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 2 x 2 grid of 20 steps: checks that the script runs")
    quick = parser.parse_args().quick
    variances = [1.0, 2.0] if quick else [1.0, 1.25, 1.5, 1.76, 2.0, 2.5, 3.0, 4.0]
    depths = [3, 6] if quick else [10, 25, 40, 55, 70, 85, 100]
    phase = phase_diagram("tanh", "mnist1d", weight_variances=variances, depths=depths, bias_variance=0.05,
                          steps=20 if quick else 300)  # fmt: skip
    plot_phase(phase, DOCS / "phase_tanh.png")
    inside, outside = phase.inside_outside()
    rows = "\n".join(
        f"| {v:g} | {xi:.1f} | " + " | ".join(f"{a:.2f}" for a in row) + " |"
        for v, xi, row in zip(phase.weight_variances, phase.xi_c, phase.accuracy, strict=True)
    )
    body = f"""## Phase diagram, tanh on MNIST-1D (`benchmarks/theory_phase.py`)

Test accuracy after {phase.steps} SGD steps (momentum 0.9, lr 0.01, batch 128), width 100,
sigma_b^2 = {phase.bias_variance}; xi_c from `trainability.theory.depth_scale`. Chance is
{phase.chance:.2f}. Wall time {phase.seconds:.0f} s with 2 worker processes. Machine: {machine()}.
Picture: [phase_tanh.png](phase_tanh.png).

| sigma_w^2 | xi_c | {" | ".join(f"depth {d}" for d in phase.depths)} |
|---|---|{"---|" * len(phase.depths)}
{rows}

Mean accuracy of cells inside the predicted band (depth <= 6 xi_c): **{inside:.3f}**; of cells
well outside it (depth > 12 xi_c): **{outside:.3f}**.
"""
    write_section("theory_phase", body)
    print(body)


if __name__ == "__main__":
    main()
