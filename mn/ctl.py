"""`python -m mn.ctl`: the stable command-line name of zstack-ctl (the code is mn.ops.ctl).

Kept because other releases run it by this name: an older release's `zstack-ctl upgrade` migrates
with `<new venv>/python -m mn.ctl deploydb`, and `zstack-ctl status`/`stop` find the MN daemon by
`mn.ctl` in its command line.
"""

from mn.ops.ctl import main

if __name__ == "__main__":
    raise SystemExit(main())
