"""VMM providers: the machine to run (base) and the QEMU command line and QMP client."""
