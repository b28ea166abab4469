"""Trace which project files `python -m reproduce ...` passes through, in order: the parent
process, calls at most WALK_DEPTH project frames below WALK_ROOT (default run_tables), consecutive
calls in one file merged into one stay; counts the returns to a file already left. Run from the
repository root: python docs/notes/command_walk.py table2 --rows A ... (writes WALK_OUT)."""
import os
import runpy
import sys

REPO = os.getcwd()
DEPTH = int(os.environ.get("WALK_DEPTH", "2"))
ROOT = os.environ.get("WALK_ROOT", "run_tables")  # the walk starts at this function
seq = []
def prof(frame, event, arg):
    if event != "call":
        return
    f = frame.f_code.co_filename
    if not f.startswith(REPO + "/") or "/tests/" in f:
        return
    d, fr = 0, frame
    while fr is not None and fr.f_code.co_name != ROOT:
        if fr.f_code.co_filename.startswith(REPO + "/"):
            d += 1
        fr = fr.f_back
    if fr is not None and d <= DEPTH:
        seq.append((os.path.relpath(f, REPO), frame.f_code.co_name))
sys.argv = ["reproduce", *sys.argv[1:]]
sys.setprofile(prof)
try:
    runpy.run_module("reproduce", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    sys.setprofile(None)
stays = []
for f, fn in seq:
    if stays and stays[-1][0] == f:
        stays[-1][1].append(fn)
    else:
        stays.append((f, [fn]))
seen, returns = set(), 0
out = []
for f, fns in stays:
    again = f in seen
    returns += again
    seen.add(f)
    names = list(dict.fromkeys(fns))
    more = " ..." if len(names) > 6 else ""
    out.append(f"{'  (again) ' if again else ''}{f}: {', '.join(names[:6])}{more}")
with open(os.environ.get("WALK_OUT", "command-walk.txt"), "w") as fh:
    fh.write("\n".join(out) + "\n")
    fh.write(f"{len(stays)} stays in {len(seen)} files, {returns} returns to a file already left\n")
