"""One module per image format: vet the header and tables, then map the virtual disk onto the file."""
