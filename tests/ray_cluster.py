"""Run a command beside a Ray cluster of two nodes (a head and a worker, one CPU each), for the
tests: ``python ray_cluster.py '[COMMAND, ...]'`` (a JSON list of argument lists) inside a
loopback-only network namespace (the test makes it: Ray would otherwise bind this machine's
own address). The commands run in turn, each with the cluster's address as RAY_ADDRESS; what
each printed and its exit code, and the cluster's nodes, come back as one JSON object on
stdout."""

import json
import os
import subprocess
import sys


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        nodes = [{"alive": node["Alive"], "cpus": node["Resources"].get("CPU", 0), "address": node["NodeManagerAddress"]}
                 for node in ray.nodes()]
        ray.shutdown()
        runs = []
        for command in json.loads(sys.argv[1]):
            done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                                  env={**os.environ, "RAY_ADDRESS": cluster.address})
            runs.append({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr})
        print(json.dumps({"runs": runs, "nodes": nodes}))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
