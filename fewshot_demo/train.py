"""Episodic meta-training and self-supervised pretraining: ``python -m fewshot_demo.train``.

Two tracks, each meta-trained on base classes disjoint from its validation and evaluation classes:

- ``--backbone efficientnet_lite0``: a projection over the bundled backbone's frozen 1280-d features,
  meta-trained on Tux Paint stamp folders other than the 9 evaluation folders (and their
  sub-folders), validated on further held-out folders. Features are computed once and cached.
- ``--backbone pixels28``: Conv-4 from scratch on 28x28 grayscale images, meta-trained on
  Fashion-MNIST classes 0-4 plus the ten MNIST digits, validated on Fashion-MNIST classes 5-9
  (training images) and evaluated on those held-out classes' test images. (Meta-training on
  Fashion-MNIST alone leaves too few base classes: the held-out gain was about half as large.)

The self-supervised methods (``--method simclr`` or ``mae``) pretrain the Conv-4 of the pixels28
track on the same base images without ever reading their labels (or on ``--images FOLDER``), and
are validated like the meta-learners. Under ``torchrun`` every command runs on several processes
(see ``fewshot_demo.runtime.distributed``).

Examples::

    python -m fewshot_demo.train --method maml --backbone efficientnet_lite0
    python -m fewshot_demo.train --method simclr --backbone pixels28 --temperature 0.2 --iterations 1000
    torchrun --standalone --nproc_per_node 4 -m fewshot_demo.train --method simclr --backbone pixels28 --device cuda
    python -m fewshot_demo.train --method protonet --backbone pixels28 --iterations 1500
    python -m fewshot_demo.train --method maml --backbone pixels28 --dry-run
    python -m fewshot_demo.train evaluate --backbone pixels28 --methods maml maml_scratch --n-shot 1 5
    python -m fewshot_demo.train push fewshot_demo/checkpoints/maml-pixels28 --repo-id you/maml-pixels28
    python -m fewshot_demo.train pull --repo-id you/maml-pixels28

The command lives in ``fewshot_demo.training`` (``cli``: arguments; ``task_pools``: the data of each
split; ``config``: one run's settings; ``loop``: the training loop); this module only starts it.
"""

from fewshot_demo.training.cli import main

if __name__ == "__main__":
    main()
