/* nothing to include: libhello is a shell library */
