"""The seed's attempts trained in PyTorch, to compare the distribution of results with ours.

Usage: python3 scripts/torch_reproduce.py DATA_DIR ATTEMPT SEED THREADS OUT_JSON EPOCHS SCHEDULE_JSON [MEAN STD]
Prints one JSON line per epoch, then writes {"attempt", "seed", "torch", "threads", "schedule",
"epochs": [...]} to OUT_JSON. `cargo xtask pytorch` runs it and adds the results to the report.

The recipe is the attempt's (see `TrainConfig::attempt` and `TrainConfig::write_up`): batch 128
shuffled each epoch, the 7,684-parameter net of `bench_torch.py` with PyTorch's default
initialisation, NLL loss on log-softmax, SGD momentum 0.9; attempts 2 and 3 add a random rotation
uniform in [-7, 7] degrees (nearest, fill 0, about the centre). The learning rate follows
SCHEDULE_JSON, the `schedule` of the run's config.json: constant; step (StepLR, stepped after each
epoch; the write-up's attempt 3 is StepLR(1) from 0.07 with gamma = (0.07 - 0.1/15)/0.07); or
one_cycle (OneCycleLR, stepped after each batch, momentum cycled). Pixels are normalised as
(x/255 - MEAN)/STD, the config's `mean` and `std` (MNIST's 0.1307 and 0.3081 by default; for
Fashion-MNIST computed from its training split). Test accuracy in eval mode.

The loop and the rotation are `torch_recipe.py`'s: torchvision's tensor `rotate` (the same inverse
matrix, grid and `grid_sample`), batched over the images of a batch with one angle each, so the
run is not held up by a per-image Python call. Not a project dependency: needs torch +
torchvision.
"""
import json, sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_torch import Net  # noqa: E402
from torch_recipe import train  # noqa: E402


def main():
    data, attempt, seed, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    epochs, schedule = int(sys.argv[6]), json.loads(sys.argv[7])
    mean, std = (float(sys.argv[8]), float(sys.argv[9])) if len(sys.argv) > 9 else (0.1307, 0.3081)
    cfg = {"mean": mean, "std": std, "batch_size": 128, "schedule": schedule, "epochs": epochs,
           "momentum": 0.9, "weight_decay": 0.0, "rotation_degrees": 7.0 if attempt >= 2 else None}
    train(cfg, data, seed, threads, out, attempt, Net)


if __name__ == "__main__":
    main()
