# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure decisions: what to do, from facts, with no effect on anything (the bottom layer)."""
