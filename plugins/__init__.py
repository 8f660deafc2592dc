"""Built-in fiqabench plugins (import package ``fiqabench_plugins``): one package per method, FR model family and dataset family."""
