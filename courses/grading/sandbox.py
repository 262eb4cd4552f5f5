"""The grader side: `python -I -m aifactory.courses.grading.sandbox` as aifactory-grader.

Reads one archive on stdin: ``manifest.json``, ``gradebook.db`` (the
assignment's definition only), ``source/<assignment>/`` (non-notebook files)
and ``submitted/<student>/<assignment>/`` for each student of the chunk. Writes
one archive on stdout: ``results.json`` and ``autograded/<student>/<assignment>/``.
stdout is the result channel, so it is taken first onto a private close-on-exec
descriptor and fd 1 becomes stderr (the task's log): a student's ``!ls`` or
forged archive cannot reach the trainer. The trainer's side refuses anything
after the archive's end (`read_archive`).

Isolation between the students of a chunk: each student is graded in a fresh
directory with a fresh copy of the gradebook (at one path, rewritten per student); only that student's files are on
disk while their kernel runs, and the results are taken into memory and the
directory deleted before the next student. The kernel runs in bubblewrap (see
jobs.kernel_argv): own namespaces, no capabilities, a read-only file system with
a private /tmp, only its notebook's folder and its socket folder writable, its
spec, the connection files' folder and the gradebook out of sight; it talks to
nbgrader over Unix sockets, the only channel left. The executed notebooks are
kept as nbgrader made them, in memory, so a later notebook's kernel cannot
rewrite an earlier one's result on disk.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

MAX_INPUT_BYTES = 512 * 2**20
# Hard ceilings: the manifest comes from the trainer's side and may ask for less, never more.
CEILINGS = {"cell_timeout_s": 600, "submission_cpu_s": 3600, "memory_mib": 4096}


def read_archive(data: bytes) -> dict[str, bytes]:
    """Archive bytes -> {relative path: content}: one plain, uncompressed tar of
    plain files, each named once, ending in its end-of-archive blocks with nothing
    but zero padding after them (a second archive appended is refused, not ignored
    as tarfile would). Raises ValueError naming what is wrong."""
    files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                path = PurePosixPath(member.name)
                if member.isdir() and not path.is_absolute() and ".." not in path.parts:
                    continue
                if not member.isfile() or path.is_absolute() or ".." in path.parts:
                    raise ValueError(f"refusing archive member {member.name!r}")
                if str(path) in files:
                    raise ValueError(f"archive member {member.name!r} appears twice")
                files[str(path)] = tar.extractfile(member).read()
            end = tar.offset
    except tarfile.TarError as exc:
        raise ValueError(f"not a well-formed tar archive ({exc})") from None
    tail = data[end:]
    if len(tail) < 2 * tarfile.BLOCKSIZE:
        raise ValueError("the archive has no end-of-archive blocks (truncated?)")
    padding = len(tail) - len(tail.lstrip(b"\0"))
    if padding != len(tail):
        raise ValueError(f"trailing data after the archive's end (byte {end + padding} of {len(data)})")
    return files


def write_archive(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _materialize(root: Path, files: dict[str, bytes], prefix: str = "") -> None:
    for name, content in files.items():
        if not name.startswith(prefix):
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _clamp(limits: dict) -> dict:
    return {k: max(1, min(int(limits.get(k, v)), v)) for k, v in CEILINGS.items()}


def _kernelspec(root: Path, limits: dict, hidden: Path, cwd: Path, ipc: Path) -> None:
    from aifactory.courses.grading.jobs import kernel_argv

    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": kernel_argv(sys.executable, limits, hidden=str(hidden), cwd=str(cwd), ipc=str(ipc)),
        "display_name": "Python 3 (grading sandbox)", "language": "python", "metadata": {"debugger": False},
    }))


def _classify(notebooks: dict[str, bytes]) -> str:
    """'ok', or 'timeout' when a cell hit the time limit, 'kernel died', or 'memory' when
    a cell ran out of the memory limit (Python's MemoryError under RLIMIT_DATA)."""
    import nbformat

    status = "ok"
    for content in notebooks.values():
        nb = nbformat.reads(content.decode(), as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error" and out.get("ename") == "CellTimeoutError":
                    return "timeout"
                if out.get("output_type") == "error" and out.get("ename") == "DeadKernelError":
                    status = "kernel died"
                if out.get("output_type") == "error" and out.get("ename") == "MemoryError" and status == "ok":
                    status = "memory"
    return status


def _keep_written(converter, folder: Path) -> dict[str, bytes]:
    """Notebook name -> the last notebook nbgrader wrote in `folder` (the executed one),
    as it wrote it: a kernel may write in that folder, so its files are not read back,
    and what a kernel left at a notebook's name (a link to /proc/self/fd/N, say) is
    removed before nbgrader writes there, with no kernel running."""
    written = {}
    write = converter.write_single_notebook

    def keep(output, resources):
        written[resources["unique_key"]] = output.encode()
        (folder / f"{resources['unique_key']}.ipynb").unlink(missing_ok=True)
        write(output, resources)

    converter.write_single_notebook = keep
    return written


def grade_student(work: Path, files: dict[str, bytes], manifest: dict, student: str, log) -> tuple[dict, dict]:
    """Autograde one student in a fresh course directory; returns (result, output files)."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import CheckCellMetadata, Execute, IgnorePattern, LimitOutput
    from traitlets.config import Config

    from aifactory.courses.grading.engines import share_engines

    share_engines()
    assignment, limits = manifest["assignment"], _clamp(manifest.get("limits", {}))
    course = Path(tempfile.mkdtemp(prefix="c", dir=work))
    home = course / "home"
    home.mkdir()
    # The gradebook sits at the same path for every student, so that nbgrader's
    # statements stay compiled between students (see engines.py); it is rewritten
    # from the pristine copy for each one, and removed with their files. Its folder
    # is covered in the kernel: the student's code cannot read the hidden tests there.
    private = work / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    gradebook = private / "gradebook.db"
    try:
        gradebook.unlink(missing_ok=True)
        gradebook.write_bytes(files["gradebook.db"])
        _materialize(course, files, "source/")
        _materialize(course, files, f"submitted/{student}/")
        # The kernel's cwd: nbgrader runs each notebook from its copy in autograded/ (it makes the folder).
        cwd = course / "autograded" / student / assignment
        ipc = course / "ipc"
        ipc.mkdir()
        _kernelspec(course / "jupyter", limits, private, cwd, ipc)
        # The sandbox's own HOME, Jupyter folders and temporary files (the kernels' connection
        # files) are out of the kernels' sight (see kernel_argv).
        (course / "rt").mkdir()
        tempfile.tempdir = str(course / "rt")   # where jupyter_client makes connection files
        os.environ.update({"HOME": str(home), "JUPYTER_PATH": str(course / "jupyter"),
                           "JUPYTER_RUNTIME_DIR": str(course / "rt")})
        c = Config()
        c.CourseDirectory.root = str(course)
        c.CourseDirectory.course_id = manifest["course_id"]
        c.CourseDirectory.db_url = f"sqlite:///{gradebook}"
        c.Autograde.create_student = True
        # Scores and late penalties computed here would be thrown away: the trainer's side
        # computes them from its own gradebook. Execute, and only record what ran.
        c.Autograde.autograde_preprocessors = [Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                               CheckCellMetadata]
        c.Execute.timeout = limits["cell_timeout_s"]
        c.Execute.startup_timeout = 60
        c.KernelManager.transport = "ipc"
        c.KernelManager.ip = str(ipc / "k")
        coursedir = CourseDirectory(config=c)
        coursedir.assignment_id = assignment
        coursedir.student_id = student
        converter = Autograde(coursedir=coursedir, config=c, parent=None)
        converter.log = log
        executed = _keep_written(converter, cwd)
        try:
            converter.start()
        except Exception as exc:  # nbgrader raises NbGraderException with the reason logged
            return {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}, {}
        notebooks = {f"autograded/{student}/{assignment}/{name}.ipynb": content for name, content in executed.items()}
        if not notebooks:
            return {"status": "failed", "detail": "nbgrader wrote no notebook"}, {}
        return {"status": _classify(notebooks)}, notebooks
    finally:
        shutil.rmtree(course, ignore_errors=True)
        gradebook.unlink(missing_ok=True)


def _take_stdio():
    """The result channel (stdout) on a private close-on-exec descriptor, fd 1 on
    stderr: what kernels and their `!ls` inherit is the task's log, not the channel."""
    channel = os.fdopen(os.dup(1), "wb")   # os.dup: not inheritable
    sys.stdout.flush()
    os.dup2(2, 1)
    return channel


def _release_stdin() -> None:
    """stdin, read in full, holds every student's submission of the chunk: /dev/null in its place."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", message=".*not in session.*")
    os.umask(0o077)
    os.chdir("/")
    channel = _take_stdio()
    data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    _release_stdin()
    if len(data) > MAX_INPUT_BYTES:
        print("input archive too large", file=sys.stderr)
        return 2
    files = read_archive(data)
    manifest = json.loads(files["manifest.json"])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"[sandbox %(levelname)s] %(message)s")
    log = logging.getLogger("sandbox")
    results, outputs = {}, {}
    work = Path(tempfile.mkdtemp(prefix="aifactory-grade-"))
    try:
        for student in manifest["students"]:
            try:
                result, out = grade_student(work, files, manifest, student, log)
            except Exception as exc:  # one student's failure never ends the chunk
                result, out = {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}, {}
            results[student] = result
            outputs.update(out)
            print(f"[sandbox] {student}: {result['status']}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outputs["results.json"] = json.dumps(results).encode()
    channel.write(write_archive(outputs))
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
