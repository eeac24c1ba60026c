"""The recipe's eight stages (keys and titles) and the programs its steps run.

Each program is a package module with a ``main(argv=None)`` (``tools/<name>.py`` is a thin wrapper around it), run
as ``python -m MODULE`` so that an installed eccentric_det runs the recipe without the checkout's ``tools/``."""
STAGES = ("teacher", "edge_kd", "codec_pretrain", "adaptive_ecc_vr", "cloud_plus", "gate", "pareto", "report")
TITLES = {"teacher": "cloud teacher", "edge_kd": "edge detector (KD)", "codec_pretrain": "codec pre-training",
          "adaptive_ecc_vr": "Adaptive ECC (variable rate)", "cloud_plus": "equal-budget cloud",
          "gate": "Dynamic ECC gate",
          "pareto": "evaluation and Pareto", "report": "report"}
TRAINING_STAGES = ("teacher", "edge_kd", "codec_pretrain", "adaptive_ecc_vr", "cloud_plus")  # their model_0*.pth go when done

TOOLS = {"train_net": "eccentric_det.cli.train_net", "export_checkpoint": "eccentric_det.cli.export_checkpoint",
         "fit_offload_gate": "eccentric_det.cli.fit_offload_gate", "pareto": "eccentric_det.cli.pareto"}
RECIPE = "eccentric_det.recipe"  # python -m eccentric_det.recipe is tools/train_eccentric.py


def tool(name):
    """The start of a command that runs program ``name`` (:data:`TOOLS`): ``["python", "-m", module]``."""
    return ["python", "-m", TOOLS[name]]
