# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""documented_options: the options a module's DOCUMENTATION gives, with those of its doc fragments."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

import yaml


def documented_options(module):
    """DOCUMENTATION's options of `module` (an imported module) with those of its doc fragments."""
    documentation = yaml.safe_load(module.DOCUMENTATION)
    options = {}
    for fragment in documentation["extends_documentation_fragment"]:
        name = fragment.split(".")[-1]
        fragments = importlib.import_module("ansible_collections.btrfs.backup.plugins.doc_fragments." + name)
        options.update(yaml.safe_load(fragments.ModuleDocFragment.DOCUMENTATION).get("options") or {})
    options.update(documentation["options"])
    return options
