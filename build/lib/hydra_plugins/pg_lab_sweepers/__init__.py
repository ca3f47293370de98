"""pg_lab's Hydra plugins. Hydra finds plugins in the `hydra_plugins` namespace (installed from the wheel);
pg_lab.train also registers them, for editable installs whose import hooks Hydra's scan cannot list."""
