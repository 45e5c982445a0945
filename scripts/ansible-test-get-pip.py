"""Stand-in for the get-pip.py bootstrap that ansible-test downloads from a host this machine cannot reach.

scripts/test.sh copies it to ~/.ansible/test/cache/get_pip_<version>.py. ansible-test runs it inside each
new venv with pip's install arguments: pip comes from ensurepip instead, then the requested version is
installed from the package index. Both run in child processes, since ensurepip run in-process does not
read /etc/pip.conf.
"""

import subprocess
import sys

# get-pip.py's own flags; pip install does not know them.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True, stdout=subprocess.DEVNULL)
arguments = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
subprocess.run([sys.executable, "-m", "pip", "install", "--upgrade"] + arguments, check=True)
