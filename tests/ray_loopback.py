"""`ray` (its command line) with every address kept on 127.0.0.1, for tests/test_scale_out.py.

Ray replaces a loopback --node-ip-address or --address by the machine's outward address
(ray._private.services.resolve_ip_for_localhost), so that other machines can reach the node. A test may send
traffic to loopback addresses only: this keeps them as given. Usage: python tests/ray_loopback.py start ...
(the driver side is kept on loopback by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, see LOOPBACK_DRIVER_ENV).
"""

import sys

import ray._private.services as services

LOOPBACK_DRIVER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # get_node_ip_address() -> 127.0.0.1

if __name__ == "__main__":
    services.resolve_ip_for_localhost = lambda host: host
    from ray.scripts.scripts import main

    sys.argv[0] = "ray"
    sys.exit(main())
