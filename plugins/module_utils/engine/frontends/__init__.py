# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The ways in: the command line, the server's restricted command, status, jobs as status sees them."""
