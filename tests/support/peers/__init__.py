"""Real storage peers on loopback for the backends' probes (ceph-mon, nfs-ganesha, tgtd,
glusterd), started by the tests in temp dirs, plus the things a probe must tell from
them: a listener that accepts and never answers, and a web server on the peer's port.
"""
