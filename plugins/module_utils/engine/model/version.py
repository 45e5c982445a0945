# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The engine's version (the collection's, as galaxy.yml states it)."""

__version__ = "1.0.0"
