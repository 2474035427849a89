"""Shared test helpers (see tests/helpers/sandbox.py).

The bounds below only stop a hang; they are not expectations of speed. On a loaded machine
(other test runs, a CPU and I/O hog) a Python child's imports alone can take many seconds.
"""

#: How long a child process (the API, a worker, the sandbox, redis-server) may take to come up.
START_TIMEOUT_S = 90.0
#: One call of the sandbox's control plane (/_sandbox/...) or a loopback probe.
CONTROL_TIMEOUT_S = 30.0
