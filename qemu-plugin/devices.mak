# Devices built into the project's qemu-system-x86_64 (configured with
# --without-default-devices, so only these and what they select are in).
# build.sh installs this file as configs/devices/x86_64-softmmu/pciem.mak.

# The card model(s) of this project, and the bridge that connects a model
# to the gateway.
CONFIG_PROTOPCIEM=y
CONFIG_PCIEM_BRIDGE=y

# -machine x-remote: a PCIe host bridge with no guest CPU, optionally
# serving its devices over vfio-user.
CONFIG_PCI_EXPRESS=y
CONFIG_MULTIPROCESS=y
CONFIG_VFIO_USER_SERVER=y

# QEMU's stock models the gateway is meant to carry next, and edu as a
# known-good reference device. NVMe links against the SPDM socket backend.
CONFIG_EDU=y
CONFIG_NVME_PCI=y
CONFIG_SPDM_SOCKET=y
CONFIG_E1000E_PCI_EXPRESS=y
CONFIG_BOCHS_DISPLAY=y

# A machine with RAM, a PCIe host (pcie=on) and no firmware to speak of,
# for the model tests that drive the card through qtest with no kernel.
CONFIG_MICROVM=y
