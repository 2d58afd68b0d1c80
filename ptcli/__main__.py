from ptcli.cli import main

if __name__ == "__main__":  # not when a replica process (spawn) imports it as __mp_main__
    main()
