"""What jobs' results take on disk, locally and on the hosts, and cleaning them up.

``usage`` measures (locally, and on a host in one command per host), ``cleanup`` plans and
carries out a cluster's policy (``results.policy``, ``results.deletion``) over the
``ResultsService``, ``report`` turns both into the tables ``%gpu_storage`` prints. Above
``results/``, which knows one job's folder and its local copy; they act on many jobs at once.
"""
