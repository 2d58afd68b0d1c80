from ptcli.cli import main

main()
