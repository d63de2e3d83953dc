SUMMARY = "Ecko Edge gateway appliance image"
DESCRIPTION = "A minimal systemd image that boots into the Ecko Edge \
               gateway, with SSH for field engineers."
SECTION = "images"
LICENSE = "MIT"

inherit core-image features_check

# The gateway is a systemd service (Type=notify, watchdog): the distro must
# use systemd as its init manager (INIT_MANAGER = "systemd").
REQUIRED_DISTRO_FEATURES = "systemd"

IMAGE_FEATURES += "ssh-server-dropbear"

IMAGE_INSTALL = "packagegroup-core-boot \
                 ecko-gateway \
                 tzdata \
                 ca-certificates \
                 ${CORE_IMAGE_EXTRA_INSTALL} \
                "
