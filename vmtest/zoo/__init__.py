"""The kernel zoo: the guest's 6.12.117 md modules with one seed fix reverted per variant."""
