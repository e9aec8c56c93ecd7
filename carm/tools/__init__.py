"""Commands for people, outside the controller: `carm explain` and `carm doctor`.

Both read the cluster once (`snapshot`), feed what they read into the controller's own
resolution code (`carm.accounts`), and print what it decides, so they cannot disagree with the
controller about how a namespace or resource resolves. Neither needs the controller running.
"""
