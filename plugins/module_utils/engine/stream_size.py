def estimate_stream_size(endpoint, runner, snapshot_path, parent_path=None, timeout=None):
    return None
