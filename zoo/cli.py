"""The ``zoo`` command: ``zoo <command> [args]`` runs the matching tool.

    zoo benchmark ...   speed / memory side by side with timm or the reference ops
    zoo train ...       fine-tune or train (tools/train.py)
    zoo validate ...    evaluate a checkpoint (tools/validate.py)
    zoo export ...      ONNX export checked in ONNX Runtime (tools/export_onnx.py)
    zoo convert ...     official checkpoint -> zoo safetensors (tools/convert_weights.py)
    zoo sr ...          super-resolve images / PSNR-SSIM eval (tools/super_resolve.py)
    zoo gpu-check ...   one-call GPU check: versions, op tests, parity, kernels, speed (tools/gpu_check.py)
    zoo predict ...     top-k classes of images: checkpoint, model name or .onnx (tools/predict.py)
    zoo mm-demo ...     draw an mmdet / mmseg model's prediction on images (tools/mm_demo.py)
    zoo digits DIR      write the embedded digits as an ImageFolder of PNGs (DIR/val/<class>/*.png)
    zoo list [PATTERN]  the registered models
"""
import importlib
import sys

# command -> module with a main(argv) function; the tools/ scripts are thin wrappers over these
COMMANDS = {
    'benchmark': 'zoo.benchmark',
    'train': 'zoo.train',
    'validate': 'zoo.validate',
    'export': 'zoo.export_onnx',
    'convert': 'zoo.convert',
    'sr': 'zoo.super_resolve',
    'gpu-check': 'zoo.gpu_check',
    'predict': 'zoo.predict',
    'mm-demo': 'zoo.mm_demo',
    'digits': 'zoo.data',
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == 'list':
        import zoo
        print('\n'.join(zoo.list_models(rest[0] if rest else None)))
        return 0
    if cmd not in COMMANDS:
        print(f'zoo: unknown command {cmd!r}; one of: list, {", ".join(COMMANDS)}', file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[cmd])
    except ImportError as e:
        print(f'zoo {cmd}: not available ({e}). Install the extra it needs, '
              f'e.g. pip install "zoo-backbones[train,onnx]"', file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


if __name__ == '__main__':
    sys.exit(main())
