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

`zoo <command> --help` lists a command's options. Errors are one line (file or flag, and the problem) with a
non-zero exit; add --verbose for the traceback.
"""
import importlib
import sys

# command -> module with a main(argv) function; the tools/ scripts are thin wrappers over these. This module
# imports nothing heavy: `zoo --help` and unknown commands answer without torch (see zoo/__init__.py).
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
    'list': 'zoo.cli',  # list_main below
}
# the extra each command's imports need, for the message when one is missing
EXTRAS = {'train': 'train', 'validate': 'train', 'export': 'onnx', 'sr': 'train', 'convert': 'convert'}


def list_main(argv) -> int:
    from .errors import ArgumentParser, UserError, run_command
    p = ArgumentParser(prog='zoo list', description='the registered zoo models (canonical zoo_ names)')
    p.add_argument('pattern', nargs='?', default=None, help="fnmatch pattern, with or without zoo_, e.g. 'moat_*'")
    args = p.parse_args(argv)

    def run():
        import zoo
        names = zoo.list_models(args.pattern)
        if not names:
            raise UserError(f'no zoo model matches {args.pattern!r}; `zoo list` shows them all')
        print('\n'.join(names))

    return run_command('zoo list', run, verbose=args.verbose)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f'zoo: error: unknown command {cmd!r}; one of: {", ".join(COMMANDS)}', file=sys.stderr)
        return 2
    if cmd == 'list':
        return list_main(rest)
    try:
        module = importlib.import_module(COMMANDS[cmd])
    except ImportError as e:
        if '--verbose' in rest:
            raise
        extra = EXTRAS.get(cmd, 'train,onnx')
        print(f'zoo {cmd}: error: not available ({e}); install its extra: pip install "zoo-backbones[{extra}]"',
              file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


if __name__ == '__main__':
    sys.exit(main())
