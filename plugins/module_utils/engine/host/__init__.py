# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Effects at the hosts: processes, btrfs, endpoints, pipelines, files of state and locks."""
