"""One error mechanism for every ``zoo`` command and the Python API's file loading.

A problem with what the user gave (a file, a flag, a model name) is a :class:`UserError` (a ``ValueError``,
so ``except ValueError`` keeps working). Every command runs through :func:`run_command`, which prints such
an error as one line naming the file or flag and the problem, exits non-zero, and shows the traceback only
with ``--verbose``. Loading a checkpoint goes through :func:`reading_checkpoint`, which turns the loaders'
own exceptions (torch's long ``weights_only`` text, safetensors' header errors, truncated zip archives)
into one line naming the file. Standard library only: ``zoo --help`` must not import torch.
"""
import argparse
import contextlib
import pickle
import sys
import traceback
import zipfile
from typing import Callable, Iterator, Optional

__all__ = ['UserError', 'PickledCodeError', 'ArgumentParser', 'reading_checkpoint', 'checkpoint_error',
           'run_command', 'error_line']

# the exit status of a refused input (argparse uses 2 for its own errors too)
EXIT_USER_ERROR = 2


class UserError(ValueError):
    """Bad input from the user; the message names the file / flag and the problem (one line)."""


class PickledCodeError(UserError):
    """A checkpoint whose pickle refers to code (objects, functions): it is refused, never executed."""

    def __init__(self, path: str):
        super().__init__(f'this file holds pickled code and was not loaded: {path}')
        self.path = path


def checkpoint_error(path: str, e: BaseException) -> Optional[UserError]:
    """The one-line error for a checkpoint ``path`` that failed to load with ``e``; None when ``e`` is not about
    the file's content (a bug elsewhere keeps its own traceback)."""
    if isinstance(e, UserError):
        return e
    cause = e
    while cause is not None:  # timm re-raises torch's refusal as a RuntimeError with the UnpicklingError as cause
        # torch.load(weights_only=True) / np.load(allow_pickle=False) refusing pickled objects
        refused_numpy_pickle = isinstance(cause, ValueError) and 'allow_pickle' in str(cause)
        if isinstance(cause, pickle.UnpicklingError) or refused_numpy_pickle:
            return PickledCodeError(path)
        cause = cause.__cause__
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if type(e).__name__ == 'SafetensorError':
        return UserError(f'{path}: not a readable safetensors file ({text})')
    if isinstance(e, (EOFError, zipfile.BadZipFile)) or (
            isinstance(e, RuntimeError) and ('PytorchStreamReader' in text or 'zip archive' in text)):
        return UserError(f'{path}: not a readable checkpoint, truncated or not a torch/safetensors file ({text})')
    return None


@contextlib.contextmanager
def reading_checkpoint(path: str) -> Iterator[None]:
    """Wrap the loading of ``path``: a refused pickle or a corrupt file becomes a :class:`UserError`."""
    try:
        yield
    except Exception as e:  # noqa: BLE001  (re-raised unchanged unless it is about the file)
        error = checkpoint_error(str(path), e)
        if error is None or error is e:
            raise
        raise error from e


def error_line(e: BaseException) -> str:
    """One line for ``e``: the message of known errors, the type and first line of anything else."""
    text = str(e).strip()
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f'{e.filename}: {e.strerror}'
    first = text.splitlines()[0] if text else ''
    if isinstance(e, (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError)):
        return first or type(e).__name__
    return f'{type(e).__name__}: {first} (run with --verbose for the traceback)'


def run_command(prog: str, fn: Callable[[], Optional[int]], verbose: bool = False) -> int:
    """``fn()``'s exit status; any exception is printed as one line ``prog: error: ...`` (traceback with
    ``verbose``) and gives a non-zero status. Known user errors exit with 2, anything else with 1."""
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001  (one readable line; the traceback with --verbose)
        if verbose:
            traceback.print_exc()
        print(f'{prog}: error: {error_line(e)}', file=sys.stderr)
        known = isinstance(e, (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError))
        return EXIT_USER_ERROR if known else 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block: ``--help`` shows it) and a ``--verbose`` flag."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument('--verbose', action='store_true', help='print the full traceback of an error')

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f'{self.prog}: error: {message} (see {self.prog} --help)\n')
