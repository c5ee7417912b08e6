"""numrec shortens OpenMP's spinning at barriers, unless the user chose a wait policy."""
import os
import subprocess
import sys

import pytest

SHOW = "import os, numrec; print(os.environ.get('GOMP_SPINCOUNT'))"


def spincount_after_import(**env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    environment.update(env)
    result = subprocess.run([sys.executable, "-c", SHOW], env=environment,
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_importing_numrec_sets_a_short_spin():
    assert spincount_after_import() == "1000"


@pytest.mark.parametrize("env, expected", [
    ({"GOMP_SPINCOUNT": "300000"}, "300000"),
    ({"OMP_WAIT_POLICY": "active"}, "None"),
    ({"OMP_WAIT_POLICY": "passive"}, "None"),
])
def test_the_users_own_setting_wins(env, expected):
    assert spincount_after_import(**env) == expected
