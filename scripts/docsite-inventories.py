#!/usr/bin/env python3
"""Make a docs-site build folder (from `antsibull-docs sphinx-init`) build offline.

The generated conf.py fetches the intersphinx inventories of the Ansible, Python and Jinja docs
from their sites, falling back on local files. The build must not reach out of the machine, so
this writes the local files (the few labels of the Ansible docs that the generated pages link to,
with the addresses those pages have there) and has conf.py read only them. The links in the built
site then point at the Ansible docs as they would online.
    scripts/docsite-inventories.py SITE_DIR
"""
import re
import sys
import zlib
from pathlib import Path

# label -> (page and anchor in the Ansible docs, title). A generated page that links to a label
# missing here makes the build warn (undefined label), and the build fails on it: add the label.
ANSIBLE_LABELS = {
    'common_return_values': ('reference_appendices/common_return_values.html#common-return-values',
                             'Return Values'),
    'ansible_configuration_settings': ('reference_appendices/config.html#ansible-configuration-settings',
                                       'Ansible Configuration Settings'),
    'list_of_collections': ('collections/index.html#list-of-collections', 'Collection Index'),
}


def inventory(project: str, labels: dict) -> bytes:
    """One objects.inv in Sphinx's version 2 format."""
    header = ('# Sphinx inventory version 2\n'
              '# Project: %s\n'
              '# Version: devel\n'
              '# The remainder of this file is compressed using zlib.\n' % project).encode()
    lines = ''.join('%s std:label -1 %s %s\n' % (name, uri, title)
                    for name, (uri, title) in sorted(labels.items()))
    return header + zlib.compress(lines.encode())


def main(site: Path) -> None:
    conf = site / 'conf.py'
    text = conf.read_text()
    # (None, '../X.inv') means "the site's own objects.inv, else the file": keep the file only.
    local_only, count = re.subn(r"\(None, '(\.\./[\w.]+\.inv)'\)", r"'\1'", text)
    if count == 0:
        sys.exit('docsite-inventories: no inventory mapping found in %s' % conf)
    conf.write_text(local_only)
    for name in re.findall(r"'\.\./([\w.]+)\.inv'", local_only):
        labels = ANSIBLE_LABELS if name.startswith('ansible') else {}
        (site / (name + '.inv')).write_bytes(inventory(name, labels))


if __name__ == '__main__':
    main(Path(sys.argv[1]))
