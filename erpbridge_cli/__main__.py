from erpbridge_cli.cli import main

main()
