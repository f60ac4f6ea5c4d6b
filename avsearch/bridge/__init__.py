"""C-MCR bridges: two small projectors that connect two frozen contrastive spaces into one."""
